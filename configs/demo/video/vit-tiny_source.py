# Source pre-training of the demo's video ViT from scratch: the identity of digits 0-4, each
# moving in a random direction at a random speed (the motion carries no label).
_base_ = ['./vit-tiny_base.py']
task = 'source'
num_classes = 5
model = dict(backbone=dict(pretrained=None, method=dict(type='FullFineTune')),
             cls_head=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(ann_file=f'{_base_.data_root}/{task}_train.txt'))
test_dataloader = dict(dataset=dict(ann_file=f'{_base_.data_root}/{task}_test.txt'))
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=15, eta_min=1e-5,
                        convert_to_iter_based=True)]
train_cfg = dict(max_epochs=15)

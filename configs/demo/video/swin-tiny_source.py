# Source pre-training of the demo's Video Swin from scratch: the identity of digits 0-4, each
# moving in a random direction at a random speed (the motion carries no label). AdamW at 2e-4,
# no warm-up: at 1e-3 (with or without a warm-up) and at 5e-4 the features collapse within the
# first epochs to one vector for every clip (loss at ln 5, one class for all) and never recover;
# at 3e-4 the loss stayed at ln 5 for ~20 epochs; at 2e-4 it leaves it after ~6, hence 30 epochs.
_base_ = ['./swin-tiny_base.py']
task = 'source'
num_classes = 5
model = dict(backbone=dict(pretrained=None, method=dict(type='FullFineTune')),
             cls_head=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(ann_file=f'{_base_.data_root}/{task}_train.txt'))
test_dataloader = dict(dataset=dict(ann_file=f'{_base_.data_root}/{task}_test.txt'))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=30, eta_min=1e-5,
                        convert_to_iter_based=True)]
train_cfg = dict(max_epochs=30)

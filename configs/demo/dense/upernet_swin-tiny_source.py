# Source pre-training of the dense demo's tiny Swin from scratch: segmenting digits 0-4 on noisy
# canvases (UperNet, every parameter trains). The trained Swin is the demo's 'pretrained'
# backbone.
_base_ = ['./upernet_swin-tiny_base.py']
task = 'source'
classes = ('background', 'digit-0', 'digit-1', 'digit-2', 'digit-3', 'digit-4')
model = dict(backbone=dict(pretrained=None, method=dict(type='FullFineTune')))
train_dataloader = dict(batch_size=8,
                        dataset=dict(data_root=f'{_base_.data_root}/ade/{task}',
                                     metainfo=dict(classes=classes)))
test_dataloader = dict(dataset=dict(data_root=f'{_base_.data_root}/ade/{task}',
                                    metainfo=dict(classes=classes)))
optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=30, eta_min=1e-5,
                        convert_to_iter_based=True)]
train_cfg = dict(max_epochs=30)

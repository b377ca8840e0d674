# Source pre-training of the demo backbone from scratch on digits 0-4 (no domain shift).
_base_ = ['./vit-tiny_digits_base.py']
data_root = 'data/digits_vtab/source'
model = dict(backbone=dict(pretrained=None, method=dict(type='FullFineTune')))
train_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=40, eta_min=1e-5,
                        convert_to_iter_based=True)]
train_cfg = dict(by_epoch=True, max_epochs=40)
default_hooks = dict(checkpoint=dict(interval=40))

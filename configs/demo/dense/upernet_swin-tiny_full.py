_base_ = ['./upernet_swin-tiny_base.py']
model = dict(backbone=dict(method=dict(type='FullFineTune')))
optim_wrapper = dict(optimizer=dict(lr=1e-3))

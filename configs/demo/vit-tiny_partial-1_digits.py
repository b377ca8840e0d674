_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='PartialK', k=1)))
optim_wrapper = dict(optimizer=dict(lr=3e-3))

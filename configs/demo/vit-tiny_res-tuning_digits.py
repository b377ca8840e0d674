_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='Res-Tuning', length=10, bottleneck=10)))

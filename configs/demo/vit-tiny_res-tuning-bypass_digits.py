_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='Res-Tuning-Bypass', bottleneck=10)))

_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='RepAdapter', bottleneck=8, groups=2)))

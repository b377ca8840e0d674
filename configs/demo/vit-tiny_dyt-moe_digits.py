_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='DyT', bottleneck=8, target_rate=0.5, experts=4)))

_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='Compacter', bottleneck=16, phm_dim=4)))

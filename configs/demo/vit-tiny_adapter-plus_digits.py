_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='Adapter+', bottleneck=8, drop_path=0.0)))

_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='ARC', rank=16, dropout=0.1)))

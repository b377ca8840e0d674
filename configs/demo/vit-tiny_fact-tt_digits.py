_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='FacT-TT', rank=8, scale=1.0)))

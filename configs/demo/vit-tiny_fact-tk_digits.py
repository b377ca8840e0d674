_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='FacT-TK', rank=16, scale=1.0)))

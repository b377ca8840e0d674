_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='LST', reduction=4, num_heads=2)))

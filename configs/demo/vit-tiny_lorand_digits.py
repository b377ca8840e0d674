_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='LoRand', branches=2, kernel=4)))

_base_ = ['./upernet_swin-tiny_base.py']
model = dict(backbone=dict(method=dict(type='LoRand', branches=2, kernel=4, factor=2)))

_base_ = ['./retinanet_swin-tiny_base.py']
model = dict(backbone=dict(method=dict(type='BitFit')))

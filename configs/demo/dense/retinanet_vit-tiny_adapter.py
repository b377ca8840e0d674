_base_ = ['./retinanet_vit-tiny_base.py']
model = dict(backbone=dict(method=dict(type='Adapter', bottleneck=8)))

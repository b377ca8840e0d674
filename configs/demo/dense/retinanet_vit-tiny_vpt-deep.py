_base_ = ['./retinanet_vit-tiny_base.py']
model = dict(backbone=dict(method=dict(type='VPT-deep', length=4)))

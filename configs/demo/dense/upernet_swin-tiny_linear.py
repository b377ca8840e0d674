_base_ = ['./upernet_swin-tiny_base.py']
model = dict(backbone=dict(method=dict(type='LinearProbe')))

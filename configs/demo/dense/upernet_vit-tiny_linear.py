_base_ = ['./upernet_vit-tiny_base.py']
model = dict(backbone=dict(method=dict(type='LinearProbe')))

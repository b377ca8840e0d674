_base_ = ['./vit-tiny_base.py']
model = dict(backbone=dict(method=dict(type='DTL', rank=8, add_blocks=(2, 3))))

_base_ = ['./upernet_vit-tiny_base.py']
# DTL's side path over the first half, added back after blocks 4-6 (stages' features)
model = dict(backbone=dict(method=dict(type='DTL', rank=8, add_blocks=(3, 4, 5))))

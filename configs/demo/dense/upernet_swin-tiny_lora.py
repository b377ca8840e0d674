_base_ = ['./upernet_swin-tiny_base.py']
model = dict(backbone=dict(method=dict(type='LoRA', rank=8, alpha=8, targets=('q', 'v'))))

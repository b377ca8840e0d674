_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='HST', dims=(16, 16, 32, 32), num_heads=(2, 2, 2, 2))),
             head=dict(in_channels=32))

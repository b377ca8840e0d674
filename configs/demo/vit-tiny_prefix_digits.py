_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='PrefixTuning', length=4, bottleneck=16)))

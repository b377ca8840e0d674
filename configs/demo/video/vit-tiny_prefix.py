_base_ = ['./vit-tiny_base.py']
model = dict(backbone=dict(method=dict(type='PrefixTuning', length=4, bottleneck=16)))
optim_wrapper = dict(optimizer=dict(lr=2e-3))  # the prefix MLP is unstable at 1e-2

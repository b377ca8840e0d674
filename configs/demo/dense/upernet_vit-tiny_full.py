_base_ = ['./upernet_vit-tiny_base.py']
model = dict(backbone=dict(method=dict(type='FullFineTune')))
# the backbone's weights learn at a tenth of the heads' lr (2e-4): at the heads' own lr, or
# 1e-3 throughout, 120 target scenes pull the features below the frozen baseline
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))

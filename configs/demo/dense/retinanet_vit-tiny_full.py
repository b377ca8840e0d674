_base_ = ['./retinanet_vit-tiny_base.py']
# as the segmentor (upernet_vit-tiny_full.py says why)
model = dict(backbone=dict(method=dict(type='FullFineTune')))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))

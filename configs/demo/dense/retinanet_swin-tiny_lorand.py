_base_ = ['./retinanet_swin-tiny_base.py']
# as the segmentor (upernet_swin-tiny_lorand.py says why)
model = dict(backbone=dict(method=dict(type='LoRand', branches=2, kernel=4, factor=2)))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=2.5)}))

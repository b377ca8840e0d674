_base_ = ['./retinanet_vit-tiny_base.py']
# as the segmentor (upernet_vit-tiny_dtl.py says why)
model = dict(backbone=dict(method=dict(type='DTL', rank=8, add_blocks=(3, 4, 5))))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=5.0)}))

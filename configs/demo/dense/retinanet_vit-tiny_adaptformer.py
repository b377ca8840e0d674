_base_ = ['./retinanet_vit-tiny_base.py']
# as the segmentor (upernet_vit-tiny_adaptformer.py says why)
model = dict(backbone=dict(method=dict(type='AdaptFormer', bottleneck=8, scale=1.0,
                                       input_norm=False)))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=2.5)}))

_base_ = ['./retinanet_swin-tiny_base.py']
model = dict(backbone=dict(method=dict(type='AdaptFormer', bottleneck=8, scale=1.0,
                                       input_norm=False)))

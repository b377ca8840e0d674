# Video Swin-B (mmaction SwinTransformer3D, patch 2x4x4, window 8x7x7) frozen inside
# vpetl_mm.PEFTBackbone, with an I3D head (average pooling, linear). Weights: the Video Swin
# Kinetics-400 checkpoint initialised from ImageNet-22k that V-PETL uses,
# swin_base_patch244_window877_kinetics400_22k.pth (mmaction 0.x layout: backbone.* keys, the
# output norm named norm, renamed to norm3 on load). Drop path 0.4 as V-PETL hard-codes it.
# The PEFT method is set by the config (method=...).
model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='vpetl_mm.PEFTBackbone',
        # arch 'base' written out, so that --cfg-options can change its sizes
        backbone=dict(type='SwinTransformer3D',
                      arch=dict(embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
                      pretrained=None,
                      pretrained2d=False, patch_size=(2, 4, 4), window_size=(8, 7, 7),
                      drop_path_rate=0.4, patch_norm=True, out_indices=(3, )),
        pretrained='pretrained/swin_base_patch244_window877_kinetics400_22k.pth',
        pretrained_prefix='backbone.',
        method=dict()),
    cls_head=dict(type='I3DHead', num_classes=400, in_channels=1024, spatial_type='avg',
                  dropout_ratio=0.0, average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], format_shape='NCTHW'))

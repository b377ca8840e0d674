# VideoMAE ViT-B/16 (mmaction VisionTransformer, tubelet 2) frozen inside vpetl_mm.PEFTBackbone,
# with mmaction's TimeSformerHead (linear on the mean-pooled tokens). Weights: the VideoMAE
# Kinetics-400 self-supervised checkpoint in mmaction layout (backbone.* keys), e.g.
# pretrained/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.pth. A checkpoint made with 16
# frames loads into an 8-frame backbone: the sinusoidal position table is recomputed.
# The PEFT method is set by the config (method=_base_.peft_method from configs/_base_/peft/).
num_frames = 8
model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='VisionTransformer', img_size=224, patch_size=16, embed_dims=768,
                      depth=12, num_heads=12, mlp_ratio=4, qkv_bias=True,
                      num_frames=num_frames, norm_cfg=dict(type='LN', eps=1e-6),
                      drop_path_rate=0.0),
        pretrained='pretrained/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.pth',
        pretrained_prefix='backbone.',
        method=dict()),
    cls_head=dict(type='TimeSformerHead', num_classes=400, in_channels=768,
                  average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], format_shape='NCTHW'))

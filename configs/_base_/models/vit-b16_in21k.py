# ViT-B/16 pretrained on ImageNet-21k, frozen inside vpetl_mm.PEFTBackbone, with a linear head.
# The checkpoint comes from tools/model_converters/vit2mmpretrain.py (Google ViT-B_16.npz or timm's
# in21k .pth). The PEFT method is set by a configs/_base_/peft/*.py file.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(
            type='VisionTransformer',
            arch='b',
            img_size=224,
            patch_size=16,
            drop_path_rate=0.1,
            qkv_bias=True,
            norm_cfg=dict(type='LN', eps=1e-6),
            final_norm=True,
            out_type='cls_token',
            init_cfg=None),
        pretrained='pretrained/vit-b16_in21k.pth',
        method=dict()),  # set by a configs/_base_/peft/*.py file
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)),
)

# Swin-B (patch 4, window 7) pretrained on ImageNet-22k, frozen inside vpetl_mm.PEFTBackbone, with
# global average pooling over the last stage (after its norm) and a linear head: the standard
# Swin classifier. The checkpoint comes from tools/model_converters/swin2mmpretrain.py applied
# to the official swin_base_patch4_window7_224_22k.pth. The PEFT method is set by the config.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='SwinTransformer', arch='base', img_size=224, patch_size=4,
                      window_size=7, drop_path_rate=0.1, out_indices=(3, ), init_cfg=None),
        pretrained='pretrained/swin-b_in22k.pth',
        method=dict()),  # set by the config
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=1024,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)),
)

# CLIP ViT-B/16 image tower (OpenAI), frozen inside vpetl_mm.PEFTBackbone, with a linear head on
# ln_post(cls) (768-d; CLIP's image projection is a linear map before a trained linear head, so
# it is left out). The checkpoint comes from tools/model_converters/vit2mmpretrain.py applied to
# OpenAI's ViT-B-16.pt. CLIP's towers: a norm before the blocks (pre_norm, no patch bias),
# QuickGELU, LayerNorm eps 1e-5; CLIP's own mean / std.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(
            type='VisionTransformer',
            arch='b',
            img_size=224,
            patch_size=16,
            drop_path_rate=0.0,
            qkv_bias=True,
            pre_norm=True,
            norm_cfg=dict(type='LN', eps=1e-5),
            layer_cfgs=dict(act_cfg=dict(type='QuickGELU')),
            final_norm=True,
            out_type='cls_token',
            init_cfg=None),
        pretrained='pretrained/clip-vit-b16_openai.pth',
        method=dict()),  # set by a configs/_base_/peft/*.py file
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)),
)
clip_data_preprocessor = dict(
    mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    to_rgb=True)

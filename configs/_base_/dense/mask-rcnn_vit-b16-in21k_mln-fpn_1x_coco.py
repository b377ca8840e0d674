# Plain-ViT PEFT recipe on COCO instance segmentation, shared by
# configs/dense/vit/mask-rcnn_vit-b-p16_*: MMDetection's Mask R-CNN with its Swin 1x recipe
# (mask-rcnn_swin-t-p4-w7_fpn_1x_coco: 12 epochs, 8 GPUs x 2 images, AdamW lr 1e-4, weight decay
# 0.05, none on norms; the lr Mona uses on COCO) with the backbone replaced by MMSegmentation's
# ViT-B/16, frozen inside vpetl_mm.PEFTBackbone, as in the ADE20K recipe
# (configs/_base_/dense/upernet_vit-b16-in21k_mln_ade20k.py): ImageNet-21k weights, pixels in
# [-1, 1], features after blocks 3, 5, 7 and 11 (stride 16), drop path 0.1.
# Neck, both shipped by the toolboxes: mmseg's MultiLevelNeck resamples the four stride-16 maps by
# 4, 2, 1 and 1/2 to strides 4, 8, 16, 32 (256 channels), then mmdet's FPN adds the stride-64
# level (max pooling) that the RPN's anchors expect.
# Weights: mmseg's tools/model_converters/vit2mmseg.py on timm's
# jx_vit_base_patch16_224_in21k-e5005f0a.pth -> pretrained/vit-b16_in21k_mmseg.pth (the ADE20K
# configs' file). img_size 224 keeps its 14 x 14 position table, which the ViT resizes to each
# batch's grid.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py']
custom_imports = dict(imports=['vpetl_mm', 'mmseg.models'], allow_failed_imports=False)
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='mmseg.VisionTransformer', img_size=(224, 224), patch_size=16,
                      embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4,
                      out_indices=(3, 5, 7, 11), qkv_bias=True, patch_bias=True,
                      drop_path_rate=0.1, with_cls_token=True, final_norm=False,
                      norm_cfg=dict(type='LN', eps=1e-6), act_cfg=dict(type='GELU'),
                      interpolate_mode='bicubic', init_cfg=None),
        pretrained='pretrained/vit-b16_in21k_mmseg.pth',
        method=dict()),  # set by each configs/dense/vit config
    neck=[
        dict(type='mmseg.MultiLevelNeck', in_channels=[768, 768, 768, 768], out_channels=256,
             scales=[4, 2, 1, 0.5]),
        dict(type='FPN', in_channels=[256, 256, 256, 256], out_channels=256, num_outs=5),
    ])
default_hooks = dict(checkpoint=dict(backend_args=dict(backend='vpetl_atomic')))
custom_hooks = [
    dict(type='vpetl_mm.PEFTSelectionHook'),
    dict(type='vpetl_mm.DyTHook'),
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

# Plain-ViT PEFT recipe on ADE20K, shared by configs/dense/vit/upernet_vit-b-p16_*: MMSegmentation's
# ViT-B/16 + MultiLevelNeck + UperNet (vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512: 8 GPUs x 2
# crops of 512 x 512, 160k iterations, linear warm-up over 1,500 iterations, then poly, power 1)
# with the ViT frozen inside vpetl_mm.PEFTBackbone, and DyT's segmentation settings where the zoo's
# differ (Dynamic-Tuning dense_tasks/Segmentation/configs/beit/upernet/our_vit.py): ImageNet-21k
# ViT-B/16 with pixels scaled to [-1, 1], features after blocks 3, 5, 7 and 11 (no final norm),
# drop path 0.1, AdamW lr 1e-3 and weight decay 0.05, sliding-window test (512, stride 341).
# Weights: mmseg's tools/model_converters/vit2mmseg.py on timm's
# jx_vit_base_patch16_224_in21k-e5005f0a.pth -> pretrained/vit-b16_in21k_mmseg.pth, loaded by
# PEFTBackbone (not by init_cfg); its 14 x 14 position table is resized to the 32 x 32 grid on
# load, its final norm and pre-logits are left out. patch_bias=True: the zoo's ViT has none and
# would drop the checkpoint's patch-embedding bias, which a frozen backbone cannot make up for.
_base_ = ['mmseg::vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
crop_size = (512, 512)
model = dict(
    pretrained=None,  # the zoo's would be handed to the backbone config: PEFTBackbone loads
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='VisionTransformer', img_size=crop_size, patch_size=16,
                      embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4,
                      out_indices=(3, 5, 7, 11), qkv_bias=True, patch_bias=True,
                      drop_path_rate=0.1, with_cls_token=True, final_norm=False,
                      norm_cfg=dict(type='LN', eps=1e-6), act_cfg=dict(type='GELU'),
                      interpolate_mode='bicubic', init_cfg=None),
        pretrained='pretrained/vit-b16_in21k_mmseg.pth',
        method=dict()),  # set by each configs/dense/vit config
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05))
default_hooks = dict(checkpoint=dict(backend_args=dict(backend='vpetl_atomic')))
custom_hooks = [
    dict(type='vpetl_mm.PEFTSelectionHook'),
    dict(type='vpetl_mm.DyTHook'),
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

# Mona on ADE20K semantic segmentation: Swin-L (ImageNet-22k, 384 px, window 12) frozen inside
# vpetl_mm.PEFTBackbone, UperNet, 160k iterations, AdamW lr 3e-4 (6e-5 x 5) and weight decay
# 0.01 with a 1,500-iteration warm-up (the Mona ADE20K settings).
# Weights: mmseg's tools/model_converters/swin2mmseg.py on swin_large_patch4_window12_384_22k.pth
# -> pretrained/swin-l-p4-w12_in22k-384_mmseg.pth (loaded by PEFTBackbone, not by init_cfg).
_base_ = ['mmseg::swin/swin-large-patch4-window12-in22k-384x384-pre_upernet_8xb2-160k_ade20k-512x512.py']  # noqa
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='SwinTransformer', pretrain_img_size=384, embed_dims=192,
                      depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12,
                      mlp_ratio=4, qkv_bias=True, drop_path_rate=0.2, patch_norm=True,
                      out_indices=(0, 1, 2, 3), use_abs_pos_embed=False, act_cfg=dict(type='GELU'),
                      norm_cfg=dict(type='LN', requires_grad=True), init_cfg=None),
        pretrained='pretrained/swin-l-p4-w12_in22k-384_mmseg.pth',
        method=dict(type='Mona', bottleneck=64, dropout=0.1)))
optim_wrapper = dict(optimizer=dict(lr=3e-4, weight_decay=0.01))
custom_hooks = [
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

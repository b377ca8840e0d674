# V-PETL's ADE20K recipe as its authors ran it (Leiyi-Hu/mona, Swin-Transformer-Semantic-
# Segmentation/mona_configs/swin-l_ade20k/ade20k_upernet_swin_large_160k_*.py), shared by
# configs/dense/upernet_swin-l-p4-w7_*_8xb2-160k_ade20k-512x512.py, on MMSegmentation 1.x:
# MMSegmentation's UperNet Swin-L recipe
# (swin/swin-large-patch4-window7-in22k-pre_upernet_8xb2-160k_ade20k-512x512.py: UPerHead 512
# channels, pool scales 1 / 2 / 3 / 6, FCN auxiliary head on stage 2 with loss weight 0.4,
# 512 x 512 crops, 8 GPUs x 2 images, 160k iterations, 1,500-iteration linear warm-up from 1e-6
# then poly decay (power 1) to 0; AdamW betas (0.9, 0.999), weight decay 0.01, none on
# absolute_pos_embed, relative_position_bias_table and norms; single-scale whole-image test)
# with the Swin-L (patch 4, window 7, ImageNet-22k 224 px) frozen inside vpetl_mm.PEFTBackbone;
# its four output LayerNorms start at weight 1 / bias 0 (norm3 takes the checkpoint's final
# norm). This file keeps mmseg's lr 6e-5, drop path 0.3 and SyncBN heads, the authors' Full and
# Fixed setting; each method's config sets what its authors' run changed (Mona: lr 3e-4 =
# 6e-5 x 5, drop path 0.2; the other baselines: BN in the heads).
# Weights: python tools/model_converters/swin2mmpretrain.py swin_large_patch4_window7_224_22k.pth
# pretrained/swin-l_in22k.pth (loaded by PEFTBackbone, not by init_cfg).
_base_ = ['mmseg::swin/swin-large-patch4-window7-in22k-pre_upernet_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='SwinTransformer', pretrain_img_size=224, embed_dims=192,
                      patch_size=4, window_size=7, mlp_ratio=4, depths=[2, 2, 18, 2],
                      num_heads=[6, 12, 24, 48], strides=(4, 2, 2, 2), out_indices=(0, 1, 2, 3),
                      qkv_bias=True, qk_scale=None, patch_norm=True, drop_rate=0.,
                      attn_drop_rate=0., drop_path_rate=0.3, use_abs_pos_embed=False,
                      act_cfg=dict(type='GELU'), norm_cfg=dict(type='LN', requires_grad=True),
                      init_cfg=None),
        pretrained='pretrained/swin-l_in22k.pth',
        method=dict()))  # set by each configs/dense config
# the hooks every vpetl_mm run needs, checkpoints written atomically
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(backend_args=dict(backend='vpetl_atomic')))
custom_hooks = [
    dict(type='vpetl_mm.PEFTSelectionHook'),
    dict(type='vpetl_mm.DyTHook'),
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

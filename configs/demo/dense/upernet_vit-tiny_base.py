# The dense digits demo (tools/demo/dense_demo.py), segmentation on a plain ViT: the UperNet of
# upernet_swin-tiny_base.py (same data, heads, schedule) on a tiny ViT (mmseg VisionTransformer:
# patch 4, 6 blocks of width 64, 4 heads, a 16 x 16 position table resized to each batch's grid)
# frozen inside vpetl_mm.PEFTBackbone, whose stride-4 features after blocks 2, 4 and 6 become
# strides 4, 8 and 16 through MMSegmentation's MultiLevelNeck (as the zoo's ViT-UperNet does).
_base_ = ['./upernet_swin-tiny_base.py']
pretrained = 'work_dirs/dense_demo/source_backbone_vit-tiny.pth'
vit = dict(type='VisionTransformer', img_size=(64, 64), patch_size=4, embed_dims=64,
           num_layers=6, num_heads=4, mlp_ratio=2, out_indices=(1, 3, 5), qkv_bias=True,
           drop_rate=0., attn_drop_rate=0., drop_path_rate=0., with_cls_token=True,
           final_norm=False, norm_cfg=dict(type='LN', eps=1e-6), act_cfg=dict(type='GELU'),
           interpolate_mode='bicubic', init_cfg=None)
model = dict(
    backbone=dict(backbone=dict(_delete_=True, **vit), pretrained=pretrained),
    neck=dict(type='MultiLevelNeck', in_channels=[64, 64, 64], out_channels=64,
              scales=[1, 0.5, 0.25]),
    decode_head=dict(in_channels=[64, 64, 64]))

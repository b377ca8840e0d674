# The dense digits demo (tools/demo/dense_demo.py), detection on a plain ViT: the RetinaNet of
# retinanet_swin-tiny_base.py (same data, head, schedule) on the tiny ViT of
# upernet_vit-tiny_base.py (MMSegmentation's VisionTransformer, loading the same source
# checkpoint) frozen inside vpetl_mm.PEFTBackbone; mmseg's MultiLevelNeck turns its stride-4
# features into strides 4, 8 and 16, then mmdet's FPN.
_base_ = ['./retinanet_swin-tiny_base.py']
custom_imports = dict(imports=['vpetl_mm', 'mmseg.models'], allow_failed_imports=False)
pretrained = 'work_dirs/dense_demo/source_backbone_vit-tiny.pth'
vit = dict(type='mmseg.VisionTransformer', img_size=(64, 64), patch_size=4, embed_dims=64,
           num_layers=6, num_heads=4, mlp_ratio=2, out_indices=(1, 3, 5), qkv_bias=True,
           drop_rate=0., attn_drop_rate=0., drop_path_rate=0., with_cls_token=True,
           final_norm=False, norm_cfg=dict(type='LN', eps=1e-6), act_cfg=dict(type='GELU'),
           interpolate_mode='bicubic', init_cfg=None)
model = dict(
    backbone=dict(backbone=dict(_delete_=True, **vit), pretrained=pretrained),
    neck=[dict(type='mmseg.MultiLevelNeck', in_channels=[64, 64, 64], out_channels=64,
               scales=[1, 0.5, 0.25]),
          dict(type='FPN', in_channels=[64, 64, 64], out_channels=32, start_level=0,
               add_extra_convs=False, num_outs=3)])

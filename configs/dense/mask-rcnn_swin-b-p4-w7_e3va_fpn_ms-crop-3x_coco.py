# E3VA on COCO instance segmentation: Swin-B (ImageNet-22k) frozen inside vpetl_mm.PEFTBackbone,
# the adapter highway feeding the FPN; Mask R-CNN + FPN with mmdet's Swin 3x multi-scale-crop
# recipe, AdamW lr 1e-4, weight decay 0.05 (no decay on norms / position tables), drop path 0.3:
# the Mona / LoRand COCO settings (E3VA publishes no config; the paper uses Cascade Mask R-CNN,
# which mmdet 3.3 ships for ResNets only).
# Weights: mmdet's tools/model_converters/swinv1_to_mmdet.py on swin_base_patch4_window7_224_22k.pth
# -> pretrained/swin-b-p4-w7_in22k_mmdet.pth (loaded by PEFTBackbone, not by init_cfg).
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py']
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='SwinTransformer', embed_dims=128, depths=[2, 2, 18, 2],
                      num_heads=[4, 8, 16, 32], window_size=7, mlp_ratio=4, qkv_bias=True,
                      drop_path_rate=0.3, patch_norm=True, out_indices=(0, 1, 2, 3),
                      with_cp=False, init_cfg=None),
        pretrained='pretrained/swin-b-p4-w7_in22k_mmdet.pth',
        method=dict(type='E3VA', branches=2, kernel=8, factor=2)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys=dict(absolute_pos_embed=dict(decay_mult=0.),
                                        relative_position_bias_table=dict(decay_mult=0.),
                                        norm=dict(decay_mult=0.))))
custom_hooks = [
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

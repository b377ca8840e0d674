# V-PETL's COCO recipe as its authors ran it (Leiyi-Hu/mona, Swin-Transformer-Object-Detection/
# mona_configs/swin-b_coco/cascade_mask_swin_base_3x_coco_sample_1_bs_16_*.py), shared by
# configs/dense/cascade-mask-rcnn_swin-b-p4-w7_*_fpn_ms-crop-3x_coco.py, on MMDetection 3.x:
# - model: MMDetection's Cascade Mask R-CNN + FPN (cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco)
#   with the authors' box heads: three ConvFCBBoxHead (4 shared convs + 1 fc, SyncBN after each
#   conv, class-specific regression of decoded boxes with GIoU loss x 10). The RPN, the FCN mask
#   head (4 convs, no norm), the RoIAlign extractors (7 / 14) and the assigners are the
#   toolbox's, as in the authors' base; the FPN has no norm.
# - backbone: Swin-B (patch 4, window 7, ImageNet-22k 224 px), drop path 0.3, four outputs, frozen
#   inside vpetl_mm.PEFTBackbone; its four output LayerNorms start at weight 1 / bias 0 (the
#   checkpoint has only the final norm, which the converter maps to norm3, the last of them).
# - data: the DETR-style multi-scale / crop augmentation of mmdet's swin ms-crop-3x configs
#   (the authors' AutoAugment), test at 1333 x 800; 16 images per iteration (here 8 GPUs x 2;
#   the authors 16 x 1).
# - schedule: 3x = 36 epochs, lr x 0.1 after epochs 27 and 33, 500-iteration linear warm-up from
#   0.001; AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, none on absolute_pos_embed,
#   relative_position_bias_table and norms. The authors trained in fp16 (apex): add --amp.
# Weights: python tools/model_converters/swin2mmpretrain.py swin_base_patch4_window7_224_22k.pth
# pretrained/swin-b_in22k.pth (loaded by PEFTBackbone, not by init_cfg).
_base_ = ['mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='SwinTransformer', embed_dims=128, depths=[2, 2, 18, 2],
                      num_heads=[4, 8, 16, 32], window_size=7, mlp_ratio=4, qkv_bias=True,
                      qk_scale=None, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.3,
                      patch_norm=True, out_indices=(0, 1, 2, 3), with_cp=False, init_cfg=None),
        pretrained='pretrained/swin-b_in22k.pth',
        method=dict()),  # set by each configs/dense config
    neck=dict(in_channels=[128, 256, 512, 1024]),
    roi_head=dict(bbox_head=[
        dict(type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1, in_channels=256,
             conv_out_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=80,
             bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                             target_stds=stds),
             reg_class_agnostic=False, reg_decoded_bbox=True,
             norm_cfg=dict(type='SyncBN', requires_grad=True),
             loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
             loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
    ]))

# augmentation strategy of DETR / Sparse R-CNN (mmdet's swin/*_ms-crop-3x_coco.py)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', keep_ratio=True,
              scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333),
                      (640, 1333), (672, 1333), (704, 1333), (736, 1333), (768, 1333),
                      (800, 1333)])],
        [dict(type='RandomChoiceResize', keep_ratio=True,
              scales=[(400, 1333), (500, 1333), (600, 1333)]),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
              allow_negative_crop=True),
         dict(type='RandomChoiceResize', keep_ratio=True,
              scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333),
                      (640, 1333), (672, 1333), (704, 1333), (736, 1333), (768, 1333),
                      (800, 1333)])],
    ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.),
        'relative_position_bias_table': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
    }))
auto_scale_lr = dict(enable=False, base_batch_size=16)
# the hooks every vpetl_mm run needs, checkpoints written atomically
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(backend_args=dict(backend='vpetl_atomic')))
custom_hooks = [
    dict(type='vpetl_mm.PEFTSelectionHook'),
    dict(type='vpetl_mm.DyTHook'),
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

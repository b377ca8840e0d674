# The dense digits demo (tools/demo/dense_demo.py), segmentation: MMSegmentation's UperNet
# (the zoo's _base_/models/upernet_swin.py, shrunk: 32 channels, pool scales 1 / 2 / 3, BN, no
# auxiliary head) on a tiny Swin (mmseg SwinTransformer: patch 4, window 4, three stages of two
# blocks, 32-128 channels) frozen inside vpetl_mm.PEFTBackbone. Data: scikit-learn's digits
# pasted on noisy canvases of 64-80 px, in the ADE20K layout (label PNGs: 0 = background, then
# the box each digit spans), read by BaseSegDataset with the demo's class names. Target task:
# segment digits 5-9, rotated by 90 degrees, on colour-inverted scenes; the backbone was
# pre-trained from scratch on segmenting digits 0-4 (..._source.py). 60 epochs of 120 scenes in
# batches of 4: the heads learn to tell the digits apart only after ~1,000 steps.
_base_ = ['mmseg::_base_/models/upernet_swin.py', 'mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)

data_root = 'data/dense_digits'
task = 'target'
classes = ('background', 'digit-5', 'digit-6', 'digit-7', 'digit-8', 'digit-9')
pretrained = 'work_dirs/dense_demo/source_backbone_swin-tiny.pth'
swin = dict(type='SwinTransformer', pretrain_img_size=64, embed_dims=32, patch_size=4,
            window_size=4, mlp_ratio=2, depths=[2, 2, 2], num_heads=[2, 4, 8],
            strides=(4, 2, 2), out_indices=(0, 1, 2), qkv_bias=True, qk_scale=None,
            patch_norm=True, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.,
            use_abs_pos_embed=False, act_cfg=dict(type='GELU'),
            norm_cfg=dict(type='LN', requires_grad=True), init_cfg=None)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(80, 80), seg_pad_val=0),  # padding is background
    backbone=dict(_delete_=True, type='vpetl_mm.PEFTBackbone', backbone=swin,
                  pretrained=pretrained, method=dict()),  # set by each method's config
    decode_head=dict(in_channels=[32, 64, 128], in_index=[0, 1, 2], pool_scales=(1, 2, 3),
                     channels=32, dropout_ratio=0.0, num_classes=len(classes),
                     norm_cfg=norm_cfg,
                     # the digits cover ~12% of the pixels: background counts less
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                      loss_weight=1.0,
                                      class_weight=[0.2] + [1.0] * (len(classes) - 1))),
    auxiliary_head=None,
    test_cfg=dict(mode='whole'))

# native sizes, no augmentation (a flipped digit is no digit)
pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]
dataset = dict(type='BaseSegDataset', img_suffix='.jpg', seg_map_suffix='.png',
               reduce_zero_label=False, metainfo=dict(classes=classes), pipeline=pipeline)
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(data_root=f'{data_root}/ade/{task}',
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training'), **dataset))
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(data_root=f'{data_root}/ade/{task}', test_mode=True,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation'), **dataset))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=60, val_interval=1000)
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=60, eta_min=1e-5,
                        convert_to_iter_based=True)]
# mmseg keeps its default hooks in the schedule configs: these are the 160k schedule's, by epoch
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=1000, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
custom_hooks = []

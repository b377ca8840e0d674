# The dense digits demo (tools/demo/dense_demo.py), detection: MMDetection's RetinaNet (the zoo's
# _base_/models/retinanet_r50_fpn.py, shrunk: FPN of 32 channels on strides 4-16, two stacked
# convs, anchors from 12 px) on the demo's tiny Swin (mmdet SwinTransformer, the layout of
# upernet_swin-tiny_base.py, whose source checkpoint it loads) frozen inside
# vpetl_mm.PEFTBackbone. Data: scikit-learn's digits pasted on noisy canvases of 64-80 px, a
# COCO folder (boxes + RLE masks) read by CocoDataset with the demo's class names; box mAP by
# CocoMetric. Target task: detect digits 5-9, rotated by 90 degrees, on colour-inverted scenes
# (40 epochs of 120 scenes in batches of 8).
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py', 'mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)

data_root = 'data/dense_digits'
task = 'target'
classes = ('digit-5', 'digit-6', 'digit-7', 'digit-8', 'digit-9')
pretrained = 'work_dirs/dense_demo/source_backbone_swin-tiny.pth'
swin = dict(type='SwinTransformer', pretrain_img_size=64, embed_dims=32, patch_size=4,
            window_size=4, mlp_ratio=2, depths=[2, 2, 2], num_heads=[2, 4, 8],
            strides=(4, 2, 2), out_indices=(0, 1, 2), qkv_bias=True, qk_scale=None,
            patch_norm=True, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.,
            use_abs_pos_embed=False, act_cfg=dict(type='GELU'),
            norm_cfg=dict(type='LN', requires_grad=True), init_cfg=None)
model = dict(
    data_preprocessor=dict(pad_size_divisor=16),
    backbone=dict(_delete_=True, type='vpetl_mm.PEFTBackbone', backbone=swin,
                  pretrained=pretrained, method=dict()),  # set by each method's config
    neck=dict(in_channels=[32, 64, 128], out_channels=32, start_level=0, add_extra_convs=False,
              num_outs=3),
    bbox_head=dict(num_classes=len(classes), in_channels=32, stacked_convs=2, feat_channels=32,
                   anchor_generator=dict(octave_base_scale=3, scales_per_octave=2,
                                         strides=[4, 8, 16])),
    test_cfg=dict(max_per_img=20))

# native sizes (Resize by 1 records the scale factor), no augmentation
pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale_factor=1.0), dict(type='PackDetInputs')]
dataset = dict(type='CocoDataset', metainfo=dict(classes=classes), pipeline=pipeline)
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None, collate_fn=dict(type='pseudo_collate'),
    dataset=dict(data_root=f'{data_root}/coco/{task}', ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=True),
                 **dataset))
test_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(data_root=f'{data_root}/coco/{task}', ann_file='annotations/instances_test.json',
                 data_prefix=dict(img='test/'), test_mode=True, **dataset))
test_evaluator = dict(type='CocoMetric', metric='bbox',
                      ann_file=f'{data_root}/coco/{task}/annotations/instances_test.json')
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=40, val_interval=1000)
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=40, eta_min=1e-5,
                        convert_to_iter_based=True)]
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(interval=1000, max_keep_ckpts=1))
custom_hooks = []

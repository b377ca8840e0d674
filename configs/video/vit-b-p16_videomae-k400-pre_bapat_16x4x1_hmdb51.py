# BAPAT (AdaptFormer + PATT, composed) on HMDB51 split 1 with the VideoMAE ViT-B/16 (Kinetics-400
# self-supervised pre-training) frozen inside vpetl_mm.PEFTBackbone, as V-PETL's video benchmark:
# SGD momentum 0.9, base lr 0.1 scaled by batch / 256, 90 epochs with 10 warm-up, weight decay 0.
# The per-run flags of the benchmark are not published; the sizes are its defaults (AdaptFormer
# 64, scale 0.1, no LayerNorm; PATT 32 on k, v, scale 0.2): 2,093,184 parameters.
# Weights: mmaction's VideoMAE checkpoint (backbone.* keys), e.g.
# pretrained/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.pth.
# Data: mmaction's HMDB51 preparation (tools/data/hmdb51) -> data/hmdb51/videos and the split lists.
_base_ = ['mmaction::_base_/default_runtime.py', '../_base_/peft/bapat.py']
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)

num_classes = 51
model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='VisionTransformer', img_size=224, patch_size=16, embed_dims=768,
                      depth=12, num_heads=12, mlp_ratio=4, qkv_bias=True, num_frames=16,
                      norm_cfg=dict(type='LN', eps=1e-6), drop_path_rate=0.1),
        pretrained='pretrained/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.pth',
        pretrained_prefix='backbone.',
        method=_base_.peft_method),
    cls_head=dict(type='TimeSformerHead', num_classes=num_classes, in_channels=768,
                  average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], format_shape='NCTHW'))

dataset_type = 'VideoDataset'
data_root = 'data/hmdb51/videos'
ann_file_train = 'data/hmdb51/hmdb51_train_split_1_videos.txt'
ann_file_val = 'data/hmdb51/hmdb51_val_split_1_videos.txt'
train_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=16, frame_interval=4, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(224, 224), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=16, frame_interval=4, num_clips=2, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 224)),
    dict(type='ThreeCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, ann_file=ann_file_train,
                 data_prefix=dict(video=data_root), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, ann_file=ann_file_val, data_prefix=dict(video=data_root),
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=90, val_begin=1, val_interval=90)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1 * 64 / 256, momentum=0.9,
                                    weight_decay=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=80, eta_min=0, by_epoch=True, begin=10, end=90,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(enable=True, base_batch_size=64)
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=2,
                                     backend_args=dict(backend='vpetl_atomic')))
custom_hooks = [
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

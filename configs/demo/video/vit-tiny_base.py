# The video digits demo (tools/demo/video_demo.py): a 4-block video ViT (mmaction
# VisionTransformer, VideoMAE layout: tubelet 2, patch 8, mean-pooled tokens) on 8-frame 32x32
# .mp4 clips of scikit-learn's digits moving across a dark canvas, decoded with decord. Target
# task: the direction of motion (right, left, down, up) of digits 5-9, which needs the order of
# the frames; the backbone was pre-trained on the identity of digits 0-4 moving at random.
_base_ = ['mmaction::_base_/default_runtime.py']
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)

data_root = 'data/video_digits'
task = 'target'
num_classes = 4
pretrained = 'work_dirs/video_demo/source_backbone_vit-tiny.pth'

model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='VisionTransformer', img_size=32, patch_size=8, embed_dims=64,
                      depth=4, num_heads=4, mlp_ratio=2, qkv_bias=True, num_frames=8,
                      tubelet_size=2, norm_cfg=dict(type='LN', eps=1e-6), drop_path_rate=0.0),
        pretrained=pretrained,
        method=dict()),  # set by each method's config
    cls_head=dict(type='TimeSformerHead', num_classes=num_classes, in_channels=64,
                  average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3,
                           format_shape='NCTHW'))

# all 8 frames in order, decoded from the .mp4 (no resize: the clips are 32x32)
pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=8, frame_interval=1, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='VideoDataset', ann_file=f'{data_root}/{task}_train.txt',
                 data_prefix=dict(video=f'{data_root}/videos'), pipeline=pipeline))
test_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='VideoDataset', ann_file=f'{data_root}/{task}_test.txt',
                 data_prefix=dict(video=f'{data_root}/videos'), pipeline=pipeline,
                 test_mode=True))
# mmaction 1.2.0's mean_class_accuracy fails on numpy 2: top-1 only
test_evaluator = dict(type='AccMetric', metric_list=('top_k_accuracy', ),
                      metric_options=dict(top_k_accuracy=dict(topk=(1, ))))
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=25, val_interval=100)
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=25, eta_min=1e-5,
                        convert_to_iter_based=True)]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1000, max_keep_ckpts=1))
custom_hooks = []

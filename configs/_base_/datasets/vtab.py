# VTAB-1K (one dataset folder in the VPT/SSF/NOAH layout, see vpetl_mm.datasets.VTAB1k).
# Default protocol: train on train800val200, evaluate on test once, at the end of training
# (the schedules set val_interval to the last epoch); no model selection on the test set.
# For selection on val200 swap this file for vtab_val200.py.
# The in21k ViT checkpoints were trained with mean = std = 0.5 (127.5 on 0..255 pixels).
# mmengine does not re-evaluate this file when a child reassigns data_root / num_classes: the
# experiment configs set them again inside every dict that uses them.
dataset_type = 'vpetl_mm.VTAB1k'
vtab_name = 'cifar100'  # config-file name of the dataset (vpetl_mm.datasets.VTAB_DATASETS)
data_root = 'data/vtab-1k/cifar'  # its folder
num_classes = 100

data_preprocessor = dict(num_classes=num_classes, mean=[127.5, 127.5, 127.5],
                         std=[127.5, 127.5, 127.5], to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic'),
    dict(type='PackInputs'),
]
# with augmentation (V-PETL's train_aug: flip + RandAugment m9, mstd 0.5, increasing)
train_pipeline_aug = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train800val200',
                 num_classes=num_classes, pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=256, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 num_classes=num_classes, pipeline=test_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, ))
# the test split doubles as the (single, final) evaluation during `tools/train.py`
val_dataloader = test_dataloader
val_evaluator = test_evaluator

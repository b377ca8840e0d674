# VTAB-1K oxford_flowers102, ARC_att (d=50, attention only), ViT-B/16 (ImageNet-21k).
# schedule: DavidYanAnDe/ARC vtab_ARC_train.py defaults (no per-dataset values)
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/arc-att.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/arc_vtab_100e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'oxford_flowers102'
data_root = 'data/vtab-1k/oxford_flowers102'
num_classes = 102
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone),
                  method=dict(_base_.peft_method)),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes,
                         mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
train_dataloader = dict(
    batch_size=32,
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))


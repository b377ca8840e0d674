# VTAB-1K oxford_iiit_pet, Adapter+ (post-block, scaled), ViT-B/16 (ImageNet-21k).
# bottleneck: visinf/adapter_plus conf/experiment/vtab/adapter_plus_dim1-8.yaml; schedule: its conf/train
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/adapter-plus.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/adapter_plus_vtab_100e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'oxford_iiit_pet'
data_root = 'data/vtab-1k/oxford_iiit_pet'
num_classes = 37
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone),
                  method=dict(_base_.peft_method, bottleneck=8)),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes,
                         mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
train_dataloader = dict(
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))


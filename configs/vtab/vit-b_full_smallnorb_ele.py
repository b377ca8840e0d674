# VTAB-1K smallnorb_ele, full fine-tuning, ViT-B/16 (ImageNet-21k).
# lr / weight decay: V-PETL Bench scripts/run_vit_fulltuning.sh
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/full.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/vtab_100e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'smallnorb_ele'
data_root = 'data/vtab-1k/smallnorb_ele'
num_classes = 9
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone),
                  method=dict(_base_.peft_method)),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
optim_wrapper = dict(optimizer=dict(lr=0.0005, weight_decay=0.1))
# full fine-tuning: warm-up from 1e-4, cosine to 1e-6 (V-PETL train/train_model_fulltuning.py)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.2, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=1e-06, by_epoch=True, begin=10,
         end=100, convert_to_iter_based=True),
]

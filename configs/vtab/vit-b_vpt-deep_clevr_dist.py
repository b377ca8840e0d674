# VTAB-1K clevr_dist, VPT-deep (per-task prompt length), ViT-B/16 (ImageNet-21k).
# lr / weight decay: V-PETL Bench scripts/run_vit_adapter.sh (shared table); prompt length: visinf/adapter_plus conf/experiment/vtab/vpt.yaml (the VPT paper's lengths)
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/vpt-deep.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/vtab_100e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'clevr_dist'
data_root = 'data/vtab-1k/clevr_dist'
num_classes = 6
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone),
                  method=dict(_base_.peft_method, length=200)),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
optim_wrapper = dict(optimizer=dict(lr=0.0018, weight_decay=0.005))

# VTAB-1K dsprites_loc, DyT with the MoE adapter (4 experts of bottleneck 64), ViT-B/16 (ImageNet-21k).
# schedule: DyT's settings (NUS-HPC-AI-Lab/Dynamic-Tuning train_vtab.sh; the MoE adapter has no released code or settings)
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/dyt-moe.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/vtab_100e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'dsprites_loc'
data_root = 'data/vtab-1k/dsprites_loc'
num_classes = 16
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone, drop_path_rate=0.0),
                  method=dict(_base_.peft_method)),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
optim_wrapper = dict(optimizer=dict(lr=0.001, weight_decay=0.0001))

# VTAB-1K dsprites_loc, HST (meta tokens + side pyramid 32/48/64/72), ViT-B/16 (ImageNet-21k).
# lr / weight decay / side drop path: AFeng-x/HST train_scripts/vit/vtab/<dataset>/train_s4.sh (no augmentation)
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/hst.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/hst_vtab_100e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'dsprites_loc'
data_root = 'data/vtab-1k/dsprites_loc'
num_classes = 16
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone),
                  method=dict(_base_.peft_method, drop_path=0.1)),
    head=dict(num_classes=num_classes, in_channels=72,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
optim_wrapper = dict(optimizer=dict(lr=0.005, weight_decay=0.0005))

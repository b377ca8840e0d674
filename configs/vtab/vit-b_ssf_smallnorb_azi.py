# VTAB-1K smallnorb_azi, SSF (scale-shift after norms and linears), ViT-B/16 (ImageNet-21k).
# lr / weight decay / drop path: SSF train_scripts/vit/vtab/main_script/main_ssf.sh
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/ssf.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/ssf_vtab_100e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'smallnorb_azi'
data_root = 'data/vtab-1k/smallnorb_azi'
num_classes = 18
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone, drop_path_rate=0.1),
                  method=dict(_base_.peft_method)),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    batch_size=32,
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
optim_wrapper = dict(optimizer=dict(lr=0.02, weight_decay=5e-05))

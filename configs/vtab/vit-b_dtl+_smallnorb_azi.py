# VTAB-1K smallnorb_azi, DTL+ (r=2, depthwise fusion conv), ViT-B/16 (ImageNet-21k).
# lr, drop path, kernel: heekhero/DTL train_scripts/vit/vtab/<dataset>/train_dtl+.sh
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/dtl+.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/dtl_vtab_110e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'smallnorb_azi'
data_root = 'data/vtab-1k/smallnorb_azi'
num_classes = 18
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone, drop_path_rate=0.2),
                  method=dict(_base_.peft_method, kernel_size=5)),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    batch_size=32,
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
optim_wrapper = dict(optimizer=dict(lr=0.003))

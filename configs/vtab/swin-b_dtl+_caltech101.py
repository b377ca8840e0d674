# VTAB-1K caltech101, DTL+ (r=4, depthwise fusion conv 5), Swin-B (ImageNet-22k).
# lr, drop path: heekhero/DTL train_scripts/swin/vtab/<dataset>/train_dtl+.sh (side maps
# before blocks 4-23, add-back after blocks 14-23); data: DTL's shared VTAB transform (mean / std
# 0.5), which we infer its Swin script uses too
_base_ = [
    '../_base_/models/swin-b_in22k.py', '../_base_/peft/dtl+.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/dtl_vtab_110e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'caltech101'
data_root = 'data/vtab-1k/caltech101'
num_classes = 102
model = dict(
    backbone=dict(backbone=dict(drop_path_rate=0.4),
                  method=dict(_base_.peft_method, rank=4, side_blocks=tuple(range(4, 24)),
                              add_blocks=tuple(range(14, 24)), kernel_size=5)),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    batch_size=32,
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
optim_wrapper = dict(optimizer=dict(lr=0.0005))

# VTAB-1K caltech101, NOAH's searched subnet (VPT-deep + LoRA + Adapter per block), ViT-B/16 (ImageNet-21k).
# subnet and schedule: ZhangYuanhan-AI/NOAH experiments/NOAH/subnet/VTAB/ViT-B_prompt_<dataset>.yaml; retrain: lr 1e-3, wd 1e-4, no augmentation, ImageNet mean / std
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/noah.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/vtab_100e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'caltech101'
data_root = 'data/vtab-1k/caltech101'
num_classes = 102
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone),
                  method=[
        dict(type='VPT-deep', length=[5, 10, 1, 5, 10, 1, 10, 1, 10, 1, 10, 1], dropout=0.1),
        dict(type='LoRA', targets=('qkv', ), rank=1, alpha=1, dropout=0.1, blocks=[0, 9, 11]),
        dict(type='LoRA', targets=('qkv', ), rank=5, alpha=5, dropout=0.1, blocks=[4, 8]),
        dict(type='LoRA', targets=('qkv', ), rank=10, alpha=10, dropout=0.1, blocks=[1, 2, 3, 5, 6, 7, 10]),
        dict(type='Adapter', bottleneck=1, blocks=[1, 5, 9]),
        dict(type='Adapter', bottleneck=5, blocks=[2, 6, 7, 10]),
        dict(type='Adapter', bottleneck=10, blocks=[0, 3, 4, 8, 11]),
    ]),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes,
                         mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
train_dataloader = dict(
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
optim_wrapper = dict(optimizer=dict(lr=0.001, weight_decay=0.0001))

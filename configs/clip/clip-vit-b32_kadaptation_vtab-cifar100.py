# KAdaptation in its own setting: the CLIP ViT-B/32 image tower (OpenAI weights converted with
# tools/model_converters/vit2mmpretrain.py ViT-B-32.pt pretrained/clip-vit-b32_openai.pth),
# CLIP's normalisation, SGD momentum 0.9 at a constant lr, here on VTAB-1K cifar100. For another
# VTAB-1K dataset change vtab_name / data_root / num_classes (vpetl_mm.datasets.VTAB_DATASETS).
_base_ = [
    '../_base_/models/clip-vit-b32.py', '../_base_/peft/kadaptation.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/kadaptation_sgd_50e.py',
    '../_base_/default_runtime.py'
]
vtab_name = 'cifar100'
data_root = 'data/vtab-1k/cifar'
num_classes = 100
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone), method=dict(_base_.peft_method)),
    head=dict(num_classes=num_classes))
data_preprocessor = dict(_base_.clip_data_preprocessor, num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(data_root=data_root, num_classes=num_classes, pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))

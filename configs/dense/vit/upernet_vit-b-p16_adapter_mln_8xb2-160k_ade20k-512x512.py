# Adapter on ADE20K: UperNet + MultiLevelNeck on ViT-B/16 (ImageNet-21k), frozen inside
# vpetl_mm.PEFTBackbone. Recipe: configs/_base_/dense/upernet_vit-b16-in21k_mln_ade20k.py
# (MMSegmentation's ViT-B/16 UperNet, 160k iterations of 8 x 2 crops of 512, with DyT's
# segmentation optimizer: AdamW lr 1e-3, weight decay 0.05).
# Method: a sequential adapter after the MLP of every block, bottleneck 8
# (the classification configs' V-PETL benchmark setting; no dense setting is published
# for it on a ViT).
# Trainable backbone parameters: 156,768.
_base_ = [
    '../../_base_/dense/upernet_vit-b16-in21k_mln_ade20k.py',
    '../../_base_/peft/adapter.py'
]
model = dict(backbone=dict(method=dict(_base_.peft_method)))

# AdaptFormer on ADE20K: UperNet + MultiLevelNeck on ViT-B/16 (ImageNet-21k), frozen inside
# vpetl_mm.PEFTBackbone. Recipe: configs/_base_/dense/upernet_vit-b16-in21k_mln_ade20k.py
# (MMSegmentation's ViT-B/16 UperNet, 160k iterations of 8 x 2 crops of 512, with DyT's
# segmentation optimizer: AdamW lr 1e-3, weight decay 0.05).
# Method: a branch parallel to the MLP of every block, bottleneck 8, scale 1,
# dropout 0.1, a LayerNorm on its input (the classification configs' V-PETL benchmark
# setting; no dense setting is published for it on a ViT).
# Trainable backbone parameters: 175,200.
_base_ = [
    '../../_base_/dense/upernet_vit-b16-in21k_mln_ade20k.py',
    '../../_base_/peft/adaptformer.py'
]
model = dict(backbone=dict(method=dict(_base_.peft_method)))

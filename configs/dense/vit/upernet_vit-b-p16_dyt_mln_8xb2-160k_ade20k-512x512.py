# DyT on ADE20K: UperNet + MultiLevelNeck on ViT-B/16 (ImageNet-21k), frozen inside
# vpetl_mm.PEFTBackbone. Recipe: configs/_base_/dense/upernet_vit-b16-in21k_mln_ade20k.py
# (MMSegmentation's ViT-B/16 UperNet, 160k iterations of 8 x 2 crops of 512, with DyT's
# segmentation optimizer: AdamW lr 1e-3, weight decay 0.05).
# Method: a token dispatcher before the MLP of every block and a parallel adapter of
# bottleneck 64, scale 0.1, dropout 0.1; target activation rate 0.5, rate-loss weight 2
# (DyT's segmentation script, dense_tasks/Segmentation/tools/seg_train.py).
# Trainable backbone parameters: 1,198,860.
_base_ = [
    '../../_base_/dense/upernet_vit-b16-in21k_mln_ade20k.py',
    '../../_base_/peft/dyt.py'
]
model = dict(backbone=dict(method=dict(_base_.peft_method, scale=0.1)))

# DyT on COCO: Mask R-CNN on ViT-B/16 (ImageNet-21k), frozen inside
# vpetl_mm.PEFTBackbone, through mmseg's MultiLevelNeck and mmdet's FPN. Recipe:
# configs/_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py (MMDetection's Swin 1x
# recipe: 12 epochs of 8 x 2 images, AdamW lr 1e-4, weight decay 0.05).
# Method: a token dispatcher before the MLP of every block and a parallel adapter of
# bottleneck 64, scale 0.1, dropout 0.1; target activation rate 0.5, rate-loss weight 2
# (DyT's segmentation script, dense_tasks/Segmentation/tools/seg_train.py; its released code has
# no detection, so its segmentation settings serve here).
# Trainable backbone parameters: 1,198,860.
_base_ = [
    '../../_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py',
    '../../_base_/peft/dyt.py'
]
model = dict(backbone=dict(method=dict(_base_.peft_method, scale=0.1)))

# VPT-deep on COCO: Mask R-CNN on ViT-B/16 (ImageNet-21k), frozen inside
# vpetl_mm.PEFTBackbone, through mmseg's MultiLevelNeck and mmdet's FPN. Recipe:
# configs/_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py (MMDetection's Swin 1x
# recipe: 12 epochs of 8 x 2 images, AdamW lr 1e-4, weight decay 0.05).
# Method: 10 prompt tokens per block after the cls token, dropout 0.1 (the project's
# default). They leave every block's output again, so the feature maps keep their grid.
# Trainable backbone parameters: 92,160.
_base_ = [
    '../../_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py',
    '../../_base_/peft/vpt-deep.py'
]
model = dict(backbone=dict(method=dict(_base_.peft_method)))

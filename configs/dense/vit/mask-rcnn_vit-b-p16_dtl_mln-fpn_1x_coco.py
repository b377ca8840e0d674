# DTL on COCO: Mask R-CNN on ViT-B/16 (ImageNet-21k), frozen inside
# vpetl_mm.PEFTBackbone, through mmseg's MultiLevelNeck and mmdet's FPN. Recipe:
# configs/_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py (MMDetection's Swin 1x
# recipe: 12 epochs of 8 x 2 images, AdamW lr 1e-4, weight decay 0.05).
# Method: rank-2 side maps reading every block's input, swish (beta 100) of their sum
# added back after blocks 6-11 (DTL's ViT-B setting, from its VTAB scripts; it publishes
# no dense setting). The neck's maps of blocks 3 and 5 are therefore the frozen ViT's.
# Trainable backbone parameters: 36,864.
_base_ = [
    '../../_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py',
    '../../_base_/peft/dtl.py'
]
model = dict(backbone=dict(method=dict(_base_.peft_method)))

# Adapter on COCO: Mask R-CNN on ViT-B/16 (ImageNet-21k), frozen inside
# vpetl_mm.PEFTBackbone, through mmseg's MultiLevelNeck and mmdet's FPN. Recipe:
# configs/_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py (MMDetection's Swin 1x
# recipe: 12 epochs of 8 x 2 images, AdamW lr 1e-4, weight decay 0.05).
# Method: a sequential adapter after the MLP of every block, bottleneck 8
# (the classification configs' V-PETL benchmark setting; no dense setting is published
# for it on a ViT).
# Trainable backbone parameters: 156,768.
_base_ = [
    '../../_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py',
    '../../_base_/peft/adapter.py'
]
model = dict(backbone=dict(method=dict(_base_.peft_method)))

# AdaptFormer on COCO: Mask R-CNN on ViT-B/16 (ImageNet-21k), frozen inside
# vpetl_mm.PEFTBackbone, through mmseg's MultiLevelNeck and mmdet's FPN. Recipe:
# configs/_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py (MMDetection's Swin 1x
# recipe: 12 epochs of 8 x 2 images, AdamW lr 1e-4, weight decay 0.05).
# Method: a branch parallel to the MLP of every block, bottleneck 8, scale 1,
# dropout 0.1, a LayerNorm on its input (the classification configs' V-PETL benchmark
# setting; no dense setting is published for it on a ViT).
# Trainable backbone parameters: 175,200.
_base_ = [
    '../../_base_/dense/mask-rcnn_vit-b16-in21k_mln-fpn_1x_coco.py',
    '../../_base_/peft/adaptformer.py'
]
model = dict(backbone=dict(method=dict(_base_.peft_method)))

# An unmodified model-zoo config made parameter-efficient: inherit it, wrap its backbone.
# {{_base_.model.backbone}} is the zoo's own backbone config, unchanged.
_base_ = ['mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py']
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='vpetl_mm.PEFTBackbone',
        backbone={{_base_.model.backbone}},
        pretrained='pretrained/vit-b16_in21k.pth',
        method=dict(type='LoRA', rank=8, targets=('q', 'v'))))

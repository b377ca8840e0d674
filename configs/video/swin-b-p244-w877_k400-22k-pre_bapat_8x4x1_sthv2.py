# BAPAT (AdaptFormer + PATT, composed) on Something-Something V2 with Video Swin-B (Kinetics-400,
# initialised from ImageNet-22k) frozen inside vpetl_mm.PEFTBackbone: V-PETL's video benchmark recipe (8 x 4
# frames, multi-scale crop, SGD lr 0.1 x batch / 256, 90 epochs, no weight decay, drop path
# 0.4). Sizes: AdaptFormer 64 (scale 0.1, no LayerNorm), PATT 128 on k, v (scale 0.2):
# 6,201,088 parameters (V-PETL reports 6.18M).
_base_ = [
    'mmaction::_base_/default_runtime.py', '../_base_/models/video-swin-b.py',
    '../_base_/datasets/sthv2_vpetl-8x4x1.py', '../_base_/schedules/vpetl_video_90e.py',
    '../_base_/peft/bapat-videoswin.py'
]
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
model = dict(backbone=dict(method=_base_.peft_method),
             cls_head=dict(num_classes=_base_.num_classes))
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=2,
                                     backend_args=dict(backend='vpetl_atomic')))
custom_hooks = [
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

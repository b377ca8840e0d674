# E3VA: LoRand-shaped adapters (2 branches, kernel 8, bottleneck C / 2) on a highway beside a frozen
# mmseg / mmdet Swin; no backpropagation through the backbone (1.20M on Swin-B).
peft_method = dict(type='E3VA', branches=2, kernel=8, factor=2)
peft_backbone = dict()

# LoRand: two adapters per block with weights synthesised from 2 branches of 8 x 8 kernels,
# bottleneck C / 2 (V-PETL's 1.20M setting on Swin-B).
peft_method = dict(type='LoRand', branches=2, kernel=8, factor=2)
peft_backbone = dict()

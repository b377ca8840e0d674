# BAPAT on Video Swin-B: the AdaptFormer-style adapter (width 64, scale 0.1, no LayerNorm) and
# PATT on k and v with width 128 (the width V-PETL's 6.18M for Swin-B implies; scale 0.2):
# 1,553,664 + 4,647,424 = 6,201,088 parameters. V-PETL's Video Swin code feeds its adapter
# norm2(x) inside the MLP's drop path; AdaptFormer (here, on every family) reads the
# post-attention stream beside it.
peft_method = [
    dict(type='AdaptFormer', bottleneck=64, scale=0.1, input_norm=False),
    dict(type='PATT', bottleneck=128, scale=0.2, targets=('k', 'v')),
]
peft_backbone = dict()

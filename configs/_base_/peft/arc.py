# ARC: symmetric projections (d=50) shared by all blocks, per-block rescale and bias, on the
# attention and MLP inputs; adapter dropout 0.1.
peft_method = dict(type='ARC', rank=50, dropout=0.1)
peft_backbone = dict()

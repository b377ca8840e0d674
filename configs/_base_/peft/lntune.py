# LN-tune: the affine weight and bias of every LayerNorm of the backbone train.
peft_method = dict(type='LNTune')
peft_backbone = dict()

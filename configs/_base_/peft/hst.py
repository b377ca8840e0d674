# HST: meta tokens in every frozen block, a 4-stage side pyramid (32/48/64/72 wide) on the image
# bridged to each block; the backbone output becomes the pooled 72-d side feature (set the head's
# in_channels to 72). The frozen blocks' LayerNorms train too.
peft_method = dict(type='HST', dims=(32, 48, 64, 72), num_heads=(2, 4, 8, 12), drop_path=0.0)
peft_backbone = dict()

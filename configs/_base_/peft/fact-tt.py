# FacT-TT: factors shared by all blocks, a free core per block; rank and scale per dataset.
peft_method = dict(type='FacT-TT', rank=8, scale=1.0, dropout=0.1)
peft_backbone = dict()

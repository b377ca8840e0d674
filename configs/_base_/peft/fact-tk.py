# FacT-TK: factors shared by all blocks, cores from one shared tensor; rank and scale per dataset.
peft_method = dict(type='FacT-TK', rank=32, scale=0.1, dropout=0.1)
peft_backbone = dict()

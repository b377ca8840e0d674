# Partial-1: the last block of the backbone trains.
peft_method = dict(type='PartialK', k=1)
peft_backbone = dict()

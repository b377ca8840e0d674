# ARC_att: ARC on the attention input only (d=50, dropout 0.1).
peft_method = dict(type='ARC_att', rank=50, dropout=0.1)
peft_backbone = dict()

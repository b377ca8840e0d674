# LAST: low-rank (r=16) self-attention side blocks after every block's detached output (gap 1);
# no released code or settings: our defaults, about V-PETL's 0.66M with a head.
peft_method = dict(type='LAST', rank=16, gap=1)
peft_backbone = dict()

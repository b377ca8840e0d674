# LoRA, rank 8 on q and v of every block, no scaling (alpha = rank), as in the V-PETL benchmark.
peft_method = dict(type='LoRA', rank=8, alpha=8, targets=('q', 'v'))
peft_backbone = dict()

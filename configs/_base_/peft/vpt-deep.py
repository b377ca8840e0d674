# VPT-deep: 10 prompt tokens per block (VPT tunes the length per task; set `length` per dataset),
# VPT's uniform init, prompt dropout 0.1 (the VPT code's setting for deep prompts).
peft_method = dict(type='VPT-deep', length=10, dropout=0.1)
peft_backbone = dict()

# VPT-deep: prompt tokens per block (10 here; the VTAB-1K configs set the VPT paper's per-task
# length), VPT's uniform init, prompt dropout 0.1 (the VPT code's setting for deep prompts).
peft_method = dict(type='VPT-deep', length=10, dropout=0.1)
peft_backbone = dict()

# VPT-shallow: 100 prompt tokens after the cls token before the first block (V-PETL Bench's
# topN=100), VPT's uniform init, no prompt dropout.
peft_method = dict(type='VPT-shallow', length=100, dropout=0.0)
peft_backbone = dict()

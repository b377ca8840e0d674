# LST: a side transformer of width C / 8 fed by ladders from every block output (V-PETL's 2.38M on
# ViT-B/16); the frozen blocks run with autograd off.
peft_method = dict(type='LST', reduction=8, num_heads=4, ffn_ratio=4, gate_temperature=0.1)
peft_backbone = dict()

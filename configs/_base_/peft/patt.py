# PATT: a tanh bottleneck (width 64) from the attention input added to keys and values,
# scale 0.2 (V-PETL's video code: att_prefix_mode='patt_kv').
peft_method = dict(type='PATT', bottleneck=64, scale=0.2, targets=('k', 'v'))
peft_backbone = dict()

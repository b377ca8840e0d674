# Prefix tuning: 10 key / value prefix tokens per attention layer from a tanh MLP (width 64);
# sizes are our defaults (V-PETL's video code leaves them to its command lines).
peft_method = dict(type='PrefixTuning', length=10, bottleneck=64)
peft_backbone = dict()

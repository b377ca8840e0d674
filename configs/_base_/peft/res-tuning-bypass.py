# Res-Tuning-Bypass: lateral / vertical adapters (bottleneck 10, ms-swift's default) on a bypass
# fed by detached block outputs; the frozen blocks run with autograd off.
peft_method = dict(type='Res-Tuning-Bypass', bottleneck=10, zero_init_last=True)
peft_backbone = dict()

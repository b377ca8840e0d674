# RepAdapter: linear group-wise adapters (d=8, 2 groups, dropout 0.1) before attention and MLP,
# folded into qkv / fc1 by merge; the scale is per dataset in the experiment configs.
peft_method = dict(type='RepAdapter', bottleneck=8, groups=2, scale=1.0, dropout=0.1)
peft_backbone = dict()

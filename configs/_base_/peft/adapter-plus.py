# Adapter+: post-block adapter with channel-wise scaling, Houlsby init, drop-path 0.1 on the branch;
# the bottleneck is per dataset in the experiment configs.
peft_method = dict(type='Adapter+', bottleneck=8, drop_path=0.1)
peft_backbone = dict()

# Hydra: rank-2 parallel and sequential branches on proj and fc2 of every block; scale, dropout,
# lr, weight decay and batch size per dataset in the experiment configs.
peft_method = dict(type='Hydra', rank=2, scale=1.0, dropout=0.0, targets=('proj', 'fc2'))
peft_backbone = dict()

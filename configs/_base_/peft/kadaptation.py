# KAdaptation: Kronecker updates of q and v, n=32 summands with rank-1 slow weights shared by all
# blocks and rank-1 fast weights per block, scale 128 / 4 * 5 = 160, dropout 0.5 on the update
# matrix (PEViT's constants), with a working initialisation (see vpetl_mm/peft/kadaptation.py).
peft_method = dict(type='KAdaptation', phm_dim=32, rank=1, scale=160.0, dropout=0.5,
                   targets=('q', 'v'))
peft_backbone = dict()

# DyT: per block a token dispatcher (Gumbel-sigmoid, straight-through) before the MLP and a
# parallel adapter (bottleneck 64: the quoted 1.19M on ViT-B/16), target activation rate 0.5
# with rate-loss weight 2 (vpetl_mm.DyTHook, in the default runtime, adds the loss).
peft_method = dict(type='DyT', bottleneck=64, scale=1.0, target_rate=0.5, rate_weight=2.0,
                   tau=5.0, dropout=0.1)
peft_backbone = dict()

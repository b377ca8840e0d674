# DyT with the paper's MoE adapter: per block the token dispatcher of DyT and 4 bottleneck-64
# adapter experts merged per sample by a router on the token mean (4,804,668 parameters on
# ViT-B/16); target activation rate 0.5, rate-loss weight 2 (vpetl_mm.DyTHook adds the loss).
# The expert count and the router input are ours: the MoE adapter has no released code.
peft_method = dict(type='DyT', bottleneck=64, scale=1.0, target_rate=0.5, rate_weight=2.0,
                   tau=5.0, dropout=0.1, experts=4)
peft_backbone = dict()

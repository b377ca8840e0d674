# BAPAT = a bottleneck adapter + PATT, composed on one backbone (V-PETL's video flags
# --ffn_adapt --att_prefix --att_prefix_mode patt_kv): AdaptFormer-style parallel MLP adapter
# (width 64, scale 0.1, no LayerNorm) and PATT on k and v (width 32, scale 0.2); 2.09M
# parameters on ViT-B (V-PETL reports 2.06M on VideoMAE ViT-B).
peft_method = [
    dict(type='AdaptFormer', bottleneck=64, scale=0.1, input_norm=False),
    dict(type='PATT', bottleneck=32, scale=0.2, targets=('k', 'v')),
]
peft_backbone = dict()

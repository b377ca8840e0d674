# Sequential adapter after the MLP of every block, bottleneck 8 (V-PETL benchmark, ViT-B/16).
model = dict(backbone=dict(method=dict(type='Adapter', bottleneck=8)))

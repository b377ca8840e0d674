# Sequential adapter after the MLP of every block, bottleneck 8 (V-PETL benchmark, ViT-B/16).
peft_method = dict(type='Adapter', bottleneck=8)
peft_backbone = dict()

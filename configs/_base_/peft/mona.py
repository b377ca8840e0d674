# Mona: two multi-cognitive adapters per block (after the attention residual and after the
# block), bottleneck 64 at every stage, dropout 0.1 (Leiyi-Hu/mona).
peft_method = dict(type='Mona', bottleneck=64, dropout=0.1)
peft_backbone = dict()

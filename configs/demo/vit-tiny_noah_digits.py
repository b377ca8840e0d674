_base_ = ['./vit-tiny_digits_base.py']
# a NOAH-style subnet for the 4-block demo ViT (cifar100's first four blocks): per-block prompt
# tokens, LoRA ranks and adapter sizes, as one composition
model = dict(backbone=dict(method=[
    dict(type='VPT-deep', length=[10, 5, 10, 1], dropout=0.1),
    dict(type='LoRA', targets=('qkv', ), rank=1, alpha=1, dropout=0.1, blocks=[1]),
    dict(type='LoRA', targets=('qkv', ), rank=5, alpha=5, dropout=0.1, blocks=[2, 3]),
    dict(type='LoRA', targets=('qkv', ), rank=10, alpha=10, dropout=0.1, blocks=[0]),
    dict(type='Adapter', bottleneck=5, blocks=[0]),
    dict(type='Adapter', bottleneck=10, blocks=[1, 2, 3]),
]))

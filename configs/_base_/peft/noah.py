# NOAH (retraining a searched subnet): a composition of VPT-deep, LoRA and Adapter with sizes per
# block; the per-dataset subnets are in configs/vtab/vit-b_noah_<dataset>.py (from NOAH's
# experiments/NOAH/subnet/VTAB/*.yaml). This base is cifar100's subnet.
peft_method = [
    dict(type='VPT-deep', length=[10, 5, 10, 1, 5, 1, 10, 1, 10, 5, 1, 10], dropout=0.1),
    dict(type='LoRA', targets=('qkv', ), rank=1, alpha=1, dropout=0.1,
         blocks=[1, 4, 6, 7, 8, 10, 11]),
    dict(type='LoRA', targets=('qkv', ), rank=5, alpha=5, dropout=0.1, blocks=[2, 3]),
    dict(type='LoRA', targets=('qkv', ), rank=10, alpha=10, dropout=0.1, blocks=[0, 5, 9]),
    dict(type='Adapter', bottleneck=1, blocks=[5, 6, 7, 11]),
    dict(type='Adapter', bottleneck=5, blocks=[0, 4]),
    dict(type='Adapter', bottleneck=10, blocks=[1, 2, 3, 8, 9, 10]),
]
peft_backbone = dict()

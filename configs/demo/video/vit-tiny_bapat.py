_base_ = ['./vit-tiny_base.py']
# composition: AdaptFormer + PATT on one backbone (V-PETL's BAPAT)
model = dict(backbone=dict(method=[
    dict(type='AdaptFormer', bottleneck=8, scale=1.0, input_norm=False),
    dict(type='PATT', bottleneck=8, scale=0.2, targets=('k', 'v')),
]))

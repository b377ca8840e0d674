_base_ = ['./vit-tiny_digits_base.py']
# composition: a backbone carries several methods at once
model = dict(backbone=dict(method=[dict(type='AdaptFormer', bottleneck=8, scale=0.1,
                                        input_norm=False),
                                   dict(type='PATT', bottleneck=8)]))

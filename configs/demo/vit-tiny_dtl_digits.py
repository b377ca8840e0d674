_base_ = ['./vit-tiny_digits_base.py']
# DTL's head: pooled patch tokens, then the final norm (moved from ln1 to ln2 on load)
model = dict(backbone=dict(backbone=dict(out_type='avg_featmap', final_norm=False),
                           method=dict(type='DTL', rank=8, add_blocks=(2, 3))))

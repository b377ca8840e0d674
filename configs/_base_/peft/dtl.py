# DTL: rank-2 side maps reading every block's input, swish(beta=100) of their running sum added
# after blocks 6..11. The head pools the patch tokens and then applies the final norm
# (out_type='avg_featmap' with final_norm=False; the converted checkpoint's final norm is moved
# to ln2 on load).
model = dict(
    backbone=dict(
        backbone=dict(out_type='avg_featmap', final_norm=False),
        method=dict(type='DTL', rank=2, beta=100.0, side_blocks=None,
                    add_blocks=(6, 7, 8, 9, 10, 11))))

# DTL: rank-2 side maps reading every block's input, swish(beta=100) of their running sum added
# after blocks 6..11 (ViT-B). The head pools the patch tokens and then applies the final norm
# (out_type='avg_featmap' with final_norm=False; the checkpoint's final norm moves to ln2 on load).
peft_method = dict(type='DTL', rank=2, beta=100.0, side_blocks=None,
                   add_blocks=(6, 7, 8, 9, 10, 11))
peft_backbone = dict(out_type='avg_featmap', final_norm=False)

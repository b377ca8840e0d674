# DTL+: DTL plus a depthwise convolution (no bias) over the patch-token grid of the side output.
peft_method = dict(type='DTL+', rank=2, beta=100.0, side_blocks=None,
                   add_blocks=(6, 7, 8, 9, 10, 11), kernel_size=3)
peft_backbone = dict(out_type='avg_featmap', final_norm=False)

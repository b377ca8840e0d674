# Res-Tuning (the unbound form of U-Tuning): per block a Res-Prefix of 10 learned key / value
# tokens beside the attention (its own softmax, through the frozen output projection) and a
# Res-Adapter of width 10 beside the MLP; 377,976 parameters on ViT-B/16. The sizes follow
# ms-swift's Res-Tuning defaults; the paper publishes no code or VTAB sizes for this form.
peft_method = dict(type='Res-Tuning', mha='prefix', ffn='adapter', length=10, bottleneck=10)
peft_backbone = dict()

# SCT: a 96 x 96 linear map on the 96 most salient channels (of 768) of the residual stream
# after attention in every block; the channels come from a pass over the training data before
# training (vpetl_mm.PEFTSelectionHook, in the default runtime).
peft_method = dict(type='SCT', top_n=96, mode='attn')
peft_backbone = dict()

# SNF: normalizing flows (affine + 16 planar steps, the authors' code) on both residual shortcuts
# of every block.
peft_method = dict(type='SNF', flow_length=16)
peft_backbone = dict()

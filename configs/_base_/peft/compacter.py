# Compacter: PHM adapter after the MLP (LayerNorm in), bottleneck 64, n=4 Kronecker summands
# with one rule shared by every PHM layer, rank-1 factors (PEViT's vision setting).
peft_method = dict(type='Compacter', bottleneck=64, phm_dim=4, rank=1, input_norm=True)
peft_backbone = dict()

# IA3: learned scales of the keys, the values and the MLP hidden activations of every block,
# initialised at one (Liu et al., NeurIPS 2022); 55,296 parameters on ViT-B/16.
peft_method = dict(type='IA3', targets=('k', 'v', 'ff'))
peft_backbone = dict()

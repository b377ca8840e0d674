# SSF: scale and shift after the patch embedding, every norm, qkv, proj, fc1, fc2 and the final
# norm; scales ~ N(1, 0.02), shifts ~ N(0, 0.02).
peft_method = dict(type='SSF', init_std=0.02)
peft_backbone = dict()

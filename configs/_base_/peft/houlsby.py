# Houlsby adapter: sequential bottlenecks after the attention projection and after the MLP,
# bottleneck 8, near-identity init (truncated normal, std 0.01).
peft_method = dict(type='Houlsby', bottleneck=8, init_std=0.01)
peft_backbone = dict()

# BitFit: every bias of the backbone trains (patch embedding, linears, norms).
peft_method = dict(type='BitFit')
peft_backbone = dict()

# Linear probing: the backbone stays frozen, only the head trains.
# (A peft base sets `peft_method` and `peft_backbone`; experiment configs put them into
#  model.backbone.method and model.backbone.backbone — mmengine forbids two bases both defining
#  `model`.)
peft_method = dict(type='LinearProbe')
peft_backbone = dict()

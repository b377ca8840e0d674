# Full fine-tuning of every backbone weight.
peft_method = dict(type='FullFineTune')
peft_backbone = dict()

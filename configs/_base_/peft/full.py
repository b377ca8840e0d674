# Full fine-tuning of every backbone weight.
model = dict(backbone=dict(method=dict(type='FullFineTune')))

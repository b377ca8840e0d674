_base_ = ['./retinanet_vit-tiny_base.py']
model = dict(backbone=dict(method=dict(type='DyT', bottleneck=8, target_rate=0.5)))
custom_hooks = [dict(type='vpetl_mm.DyTHook')]  # the token-dispatch rate loss and its schedule

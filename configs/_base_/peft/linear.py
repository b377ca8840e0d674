# Linear probing: the backbone stays frozen, only the head trains.
model = dict(backbone=dict(method=dict(type='LinearProbe')))

# DTL's VTAB-1K schedule (train_vit_vtab.py; the experiment configs set batch 32): AdamW with
# weight decay 0.05 except on biases, 10 warm-up epochs from ~1e-7 (start factor 1e-4 of the lr),
# cosine to 1e-8 over 100 epochs, then 10 epochs at the minimum (timm's cycle length + warm-up =
# 110 epochs). One evaluation, after the last epoch.
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                     paramwise_cfg=dict(bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=1e-8, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]  # epochs 100..109 keep the last value, 1e-8
train_cfg = dict(by_epoch=True, max_epochs=110, val_interval=110)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=32)

# ARC's VTAB-1K schedule (vtab_ARC_train.py defaults): AdamW lr 1e-2, weight decay 0, batch 32,
# 100 epochs with 10 warm-up epochs then cosine (per step, floor 1e-6 of the lr), gradient clipping
# at norm 1. One evaluation, after the last epoch (the authors report the best test epoch; we don't).
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.0),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=1e-8, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=100)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=32)

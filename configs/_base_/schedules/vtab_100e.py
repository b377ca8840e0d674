# V-PETL Bench VTAB-1K schedule: AdamW, 100 epochs, 10 linear warm-up epochs, then cosine to 1e-5
# (timm CosineLRScheduler settings of the benchmark); lr / weight decay per dataset in the
# experiment configs. One evaluation, after the last epoch.
# Differences from the benchmark's timm scheduler, all small: timm warms up from 1e-6 absolute
# where this starts at lr * 1e-3 (1e-6 for lr 1e-3, 1e-5 for lr 1e-2), timm steps once per epoch
# where this steps per iteration, and timm's cosine runs over epochs 0..100 (the warm-up overlaps
# its first 10 epochs) where this one runs from the end of the warm-up.
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=1e-5, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=100)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=64)

# GPS's VTAB-1K schedule (FightingFighting/GPS train_scripts/vit/vtab/*/train_gps.sh): Adam with
# weight decay 0 (GPS masks gradients, so decay must not move the unselected weights), 100
# epochs, 10 warm-up epochs from ~1e-7, cosine to 1e-8; lr and batch per dataset in the
# experiment configs. The warm-up starts at lr * 1e-4 here (1e-7 for lr 1e-3) where the authors'
# timm scheduler starts at 1e-7 absolute. One evaluation, after the last epoch.
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3, weight_decay=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=1e-8, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=100)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=32)

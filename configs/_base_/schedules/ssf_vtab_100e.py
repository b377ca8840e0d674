# SSF's VTAB-1K schedule (its timm train.py scripts; the experiment configs set batch 32): AdamW,
# 100 epochs, 10 warm-up epochs from ~1e-7 (start factor 1e-4 of the lr), cosine to 1e-8; weight
# decay per dataset. One evaluation, after the last epoch.
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=5e-3, weight_decay=5e-5))
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

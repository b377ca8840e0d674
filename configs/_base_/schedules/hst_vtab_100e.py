# HST's VTAB-1K schedule (AFeng-x/HST train_scripts/vit/vtab/<dataset>/train_s4.sh): AdamW,
# effective batch 64, 100 epochs, 10 warm-up epochs from ~1e-7, cosine to 1e-8; lr, weight decay
# and side drop path per dataset in the experiment configs. The warm-up starts at lr * 1e-4 here
# where the authors' timm scheduler starts at 1e-7 absolute. One evaluation, after the last epoch.
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=1e-8, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=100)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=64)

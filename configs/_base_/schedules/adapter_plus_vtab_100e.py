# Adapter+'s VTAB-1K schedule (visinf/adapter_plus conf/train): AdamW lr 1e-3, weight decay 1e-4
# except on 1-D parameters (biases, norms, scalings), batch 64, 100 epochs: 10 linear warm-up
# epochs from lr/100, then cosine to lr/1000. One evaluation, after the last epoch.
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
                     paramwise_cfg=dict(flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=1e-6, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=100)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=64)

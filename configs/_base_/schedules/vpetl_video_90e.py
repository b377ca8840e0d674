# V-PETL's video schedule (its train_model_*.py defaults, the AdaptFormer video recipe): SGD
# momentum 0.9, weight decay 0, base lr 0.1 x batch / 256, 90 epochs with 10 linear warm-up
# epochs then a half cosine to 0, stepped per iteration; no layer decay. The benchmark's own
# batch is not published: 8 clips per GPU on 8 GPUs here (lr scaled by auto_scale_lr).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=90, val_begin=1, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1 * 64 / 256, momentum=0.9,
                                    weight_decay=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=80, eta_min=0, by_epoch=True, begin=10, end=90,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(enable=True, base_batch_size=64)

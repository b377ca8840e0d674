# MMAction2's Video Swin schedule on Kinetics-400 (swin-base-p244-w877_in1k-pre_8xb8-amp-
# 32x2x1-30e_kinetics400-rgb.py): AdamW lr 1e-3, weight decay 0.05 (none on the relative
# position bias tables and norms; the constructor matches these names as substrings), 2.5 linear
# warm-up epochs then a cosine over 30 epochs, 8 GPUs x 8 clips. Its AmpOptimWrapper is
# `tools/train.py --amp` here (GPU only).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=30, val_begin=1, val_interval=3)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='SwinOptimWrapperConstructor',
    paramwise_cfg=dict(absolute_pos_embed=dict(decay_mult=0.),
                       relative_position_bias_table=dict(decay_mult=0.),
                       norm=dict(decay_mult=0.)))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=2.5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=30, eta_min=0, by_epoch=True, begin=0, end=30),
]
auto_scale_lr = dict(enable=False, base_batch_size=64)

# Runtime shared by vpetl_mm configs (mmpretrain scope). Checkpoints keep only the trainable
# weights and are written atomically; the summary hook logs trainable / total parameters.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2,
                    backend_args=dict(backend='vpetl_atomic')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
custom_hooks = [
    dict(type='vpetl_mm.PEFTSelectionHook'),  # SCT / GPS: selection pass (no-op otherwise)
    dict(type='vpetl_mm.DyTHook'),  # DyT: rate loss and activation-rate log (no-op otherwise)
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=42, deterministic=False)

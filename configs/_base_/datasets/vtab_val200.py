# VTAB-1K with selection on val200: train on train800, validate on val200 every 10 epochs and keep
# the best checkpoint by val200 top-1 (best_accuracy_top1_*.pth); test that one on the test split
# with tools/test.py. The test split is never used for selection.
_base_ = ['./vtab.py']
train_dataloader = dict(dataset=dict(split='train800'))
val_dataloader = dict(
    batch_size=256, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='vpetl_mm.VTAB1k', split='val200', pipeline={{_base_.test_pipeline}}))
val_evaluator = dict(type='Accuracy', topk=(1, ))
train_cfg = dict(val_interval=10)
default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))

# VTAB-1K with model selection on val200, a drop-in replacement for vtab.py in an experiment's
# `_base_` list: train on train800, validate on val200, test on test. The test split is never used
# for selection.
#
# The validation interval and the best-checkpoint rule live in keys that the schedule and runtime
# bases already define (train_cfg, default_hooks), and mmengine refuses a key defined by two bases,
# so set them in the experiment config itself:
#
#   train_cfg = dict(val_interval=10)
#   default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
#
# (or append `--cfg-options train_cfg.val_interval=10 default_hooks.checkpoint.save_best=accuracy/top1
# default_hooks.checkpoint.rule=greater` to tools/train.py). Then run tools/test.py on the
# best_accuracy_top1_*.pth checkpoint.
#
# The same switch on top of any configs/vtab/*.py experiment, as a child config:
#
#   _base_ = ['./vit-b_lora_cifar100.py']
#   train_dataloader = dict(dataset=dict(split='train800'))
#   val_dataloader = dict(dataset=dict(split='val200'))
#   train_cfg = dict(val_interval=10)
#   default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
_base_ = ['./vtab.py']
train_dataloader = dict(dataset=dict(split='train800'))
val_dataloader = dict(dataset=dict(split='val200'))  # otherwise a copy of test_dataloader

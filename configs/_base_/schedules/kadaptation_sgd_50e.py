# KAdaptation's training protocol (PEViT, ELEVATER): SGD with momentum 0.9 at a constant lr,
# batch 64, 50 epochs (10 + 40 extra final-run epochs). The authors pick lr in logspace(-6, -1)
# and weight decay by a sweep per dataset (validated on val); no values are published, so the
# lr here is a starting point to sweep, not a published setting. One evaluation at the end.
optim_wrapper = dict(optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=0.0))
param_scheduler = []
train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=50)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=64)

# The digits demo (tools/demo/digits_demo.py): a 4-block ViT on 32x32 renderings of scikit-learn's
# bundled handwritten digits, exported to the VTAB-1K folder format. Source task: digits 0-4.
# Target task: digits 5-9, colour-inverted and rotated by 90 degrees (a domain shift, so a linear
# head on the frozen source backbone is clearly worse than adapting the backbone).
_base_ = ['../_base_/default_runtime.py']

data_root = 'data/digits_vtab/target'
num_classes = 5
pretrained = 'work_dirs/digits_demo/source_backbone.pth'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(
            type='VisionTransformer',
            arch=dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128),
            img_size=32,
            patch_size=8,
            qkv_bias=True,
            drop_path_rate=0.0,
            norm_cfg=dict(type='LN', eps=1e-6),
            out_type='cls_token',
            init_cfg=None),
        pretrained=pretrained,
        method=dict()),  # set by a configs/_base_/peft/*.py file
    neck=None,
    head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=64,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
data_preprocessor = dict(num_classes=num_classes, mean=[127.5] * 3, std=[127.5] * 3,
                         to_rgb=False)
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='vpetl_mm.VTAB1k', data_root=data_root, split='train800val200',
                 num_classes=num_classes, pipeline=pipeline))
test_dataloader = dict(
    batch_size=128, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='vpetl_mm.VTAB1k', data_root=data_root, split='test',
                 num_classes=num_classes, pipeline=pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, ))
val_dataloader = None
val_evaluator = None
val_cfg = None
test_cfg = dict()

optim_wrapper = dict(optimizer=dict(type="AdamW", lr=1e-2, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=50, eta_min=1e-5,
                        convert_to_iter_based=True)]
train_cfg = dict(by_epoch=True, max_epochs=50)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=50, max_keep_ckpts=1))

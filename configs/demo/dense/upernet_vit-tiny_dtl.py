_base_ = ['./upernet_vit-tiny_base.py']
# DTL's side path over the first half, added back after blocks 4-6 (stages' features)
model = dict(backbone=dict(method=dict(type='DTL', rank=8, add_blocks=(3, 4, 5))))
# DTL's weights learn at 5 x the heads' lr (1e-2): at the shared 2e-3 its mIoU / box mAP stayed
# below the frozen baseline's (54.7 / 55.7 against 55.1 / 55.8; 59.6 / 56.2 at 1e-2; adding
# back after blocks 2-6 instead gave 52.9 box mAP)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=5.0)}))

_base_ = ['./retinanet_vit-tiny_base.py']
# as the segmentor (upernet_vit-tiny_vpt-deep.py says why; 54.0 and 52.9 box mAP with 4 prompts
# at 2e-3 and 1e-2 against 55.8, 56.7 with 16)
model = dict(backbone=dict(method=dict(type='VPT-deep', length=16)))

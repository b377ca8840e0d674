_base_ = ['./retinanet_swin-tiny_base.py']
# as the segmentor (upernet_swin-tiny_lora.py says why)
model = dict(backbone=dict(method=dict(type='LoRA', rank=8, alpha=8,
                                       targets=('q', 'v', 'fc1', 'fc2'))))

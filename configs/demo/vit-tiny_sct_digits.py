_base_ = ['./vit-tiny_digits_base.py']
# 8 of the 64 channels per block (1/8, as 96 of 768 on ViT-B/16)
model = dict(backbone=dict(method=dict(type='SCT', top_n=8, mode='attn')))

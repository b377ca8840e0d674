# CLIP ViT-B/16 image tower (OpenAI): the B/32 tower of ./clip-vit-b32.py with 16 x 16 patches.
# Checkpoint: tools/model_converters/vit2mmpretrain.py ViT-B-16.pt
# pretrained/clip-vit-b16_openai.pth
_base_ = ['./clip-vit-b32.py']
model = dict(backbone=dict(backbone=dict(patch_size=16),
                           pretrained='pretrained/clip-vit-b16_openai.pth'))

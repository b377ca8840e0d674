# V-PETL's Pascal VOC recipe as its authors ran it (Leiyi-Hu/mona, Swin-Transformer-Object-
# Detection/mona_configs/swin-l_voc/voc_retinanet_swin_large_1x_*.py), shared by
# configs/dense/retinanet_swin-l-p4-w7_*_fpn_1x_voc0712.py, on MMDetection 3.x:
# - model: MMDetection's RetinaNet for VOC (pascal_voc/retinanet_r50_fpn_1x_voc0712: focal loss
#   gamma 2 / alpha 0.25, L1 box loss, 20 classes) with Swin-L features of stages 1-3 (strides 8,
#   16, 32) into the FPN (in 384 / 768 / 1536, start level 0, extra levels 'on_input', 5 outputs),
#   as mmdet's retinanet_swin-t-p4-w7_fpn_1x_coco.py does for Swin.
# - backbone: Swin-L (patch 4, window 7, ImageNet-22k 224 px), drop path 0.2, frozen inside
#   vpetl_mm.PEFTBackbone; its output LayerNorms start at weight 1 / bias 0 (norm3 takes the
#   checkpoint's final norm). The authors also set frozen_stages=1 (the Swin repository's
#   numbering: the patch embedding is frozen at train time): nothing for methods that freeze it
#   anyway, but the patch embedding's 9,792 weights stayed frozen for Full, its 384 biases for
#   BitFit and its 384 norm weights for LN-tune. Here the method alone decides (mmdet's
#   frozen_stages, re-applied in train(), would freeze weights that the optimizer and DDP
#   already hold as trainable).
# - data: mmdet's voc0712 (VOC 2007 + 2012 trainval repeated 3 times, 1000 x 600, flip; VOC 2007
#   test with 11-point mAP); 2 images per iteration as in the authors' log (24,827 iterations
#   per repeated epoch): run on 2 GPUs (tools/dist_train.sh CONFIG 2), or set
#   train_dataloader.batch_size=2 on one.
# - schedule: 4 epochs of the 3x-repeated set (12 passes), lr x 0.1 after epoch 3, no warm-up;
#   AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, none on absolute_pos_embed,
#   relative_position_bias_table and norms. The authors trained in fp16 (apex): add --amp.
# Weights: python tools/model_converters/swin2mmpretrain.py swin_large_patch4_window7_224_22k.pth
# pretrained/swin-l_in22k.pth (loaded by PEFTBackbone, not by init_cfg).
_base_ = ['mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='SwinTransformer', embed_dims=192, depths=[2, 2, 18, 2],
                      num_heads=[6, 12, 24, 48], window_size=7, mlp_ratio=4, qkv_bias=True,
                      qk_scale=None, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.2,
                      patch_norm=True, out_indices=(1, 2, 3), with_cp=False, init_cfg=None),
        pretrained='pretrained/swin-l_in22k.pth',
        method=dict()),  # set by each configs/dense config
    neck=dict(in_channels=[384, 768, 1536], start_level=0, add_extra_convs='on_input',
              num_outs=5))

train_dataloader = dict(batch_size=1)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.),
        'relative_position_bias_table': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
    }))
auto_scale_lr = dict(enable=False, base_batch_size=2)
# the hooks every vpetl_mm run needs, checkpoints written atomically
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(backend_args=dict(backend='vpetl_atomic')))
custom_hooks = [
    dict(type='vpetl_mm.PEFTSelectionHook'),
    dict(type='vpetl_mm.DyTHook'),
    dict(type='vpetl_mm.PEFTSummaryHook'),
    dict(type='vpetl_mm.TrainableCheckpointHook'),
]

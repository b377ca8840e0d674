# The video digits demo's Video Swin (mmaction SwinTransformer3D, patch 2x4x4, window 2x4x4,
# four stages of two blocks, 16-128 channels) with an I3D head; the data, schedule and the
# target task as in vit-tiny_base.py.
_base_ = ['./vit-tiny_base.py']
pretrained = 'work_dirs/video_demo/source_backbone_swin-tiny.pth'
model = dict(
    backbone=dict(
        backbone=dict(_delete_=True, type='SwinTransformer3D',
                      arch=dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8]),
                      pretrained=None, pretrained2d=False, patch_size=(2, 4, 4),
                      window_size=(2, 4, 4), drop_path_rate=0.0, patch_norm=True,
                      out_indices=(3, )),
        pretrained=pretrained),
    cls_head=dict(_delete_=True, type='I3DHead', num_classes=_base_.num_classes,
                  in_channels=128, spatial_type='avg', dropout_ratio=0.0,
                  average_clips='prob'))

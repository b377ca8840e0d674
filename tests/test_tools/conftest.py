import copy

import pytest
import torch


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """A small VTAB-1K folder: digits 0-2 at 32x32."""
    from vpetl_mm.datasets.digits import export_digits_vtab
    root = tmp_path_factory.mktemp('digits') / 'target'
    export_digits_vtab(str(root), classes=(0, 1, 2), train_fraction=0.3)
    return str(root)


TINY_VIT = dict(type='VisionTransformer',
                arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
                img_size=32, patch_size=8, qkv_bias=True, norm_cfg=dict(type='LN', eps=1e-6),
                out_type='cls_token', init_cfg=None)


@pytest.fixture(scope='session')
def tiny_pretrained(tmp_path_factory):
    """A 'pretrained' tiny ViT checkpoint (random weights)."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    vit = MODELS.build(copy.deepcopy(TINY_VIT))
    vit.init_weights()
    path = tmp_path_factory.mktemp('pretrained') / 'tiny_vit.pth'
    torch.save({'state_dict': vit.state_dict()}, path)
    return str(path)

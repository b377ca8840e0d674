"""The CLIP image-tower configs (KAdaptation's own setting) build the tower the converter fills."""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.parametrize('patch', [32, 16])
def test_clip_kadaptation_config(patch):
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'clip', f'clip-vit-b{patch}_kadaptation_vtab-cifar100.py'))
    bb = cfg.model.backbone
    assert bb.pretrained == f'pretrained/clip-vit-b{patch}_openai.pth'
    assert bb.backbone.pre_norm and bb.backbone.patch_size == patch
    assert bb.backbone.layer_cfgs.act_cfg.type == 'QuickGELU'
    assert bb.method.type == 'KAdaptation'
    assert cfg.optim_wrapper.optimizer.type == 'SGD'
    assert cfg.data_preprocessor.mean[0] == pytest.approx(0.48145466 * 255)
    model = cfg.model.to_dict()
    model['backbone']['pretrained'] = None
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        classifier = MODELS.build(model)
    backbone = classifier.backbone
    assert backbone.patch_embed.projection.bias is None  # CLIP's conv1 has no bias
    assert sum(p.numel() for p in backbone.parameters() if p.requires_grad) == 50176
    keys = set(backbone.state_dict())
    assert 'pre_norm.weight' in keys and 'layers.11.attn.qkv.bias' in keys

"""Mona / LoRand dense-prediction configs (their papers' home): the zoo recipes with the Swin
backbone wrapped, and the authors' Swin-B / Swin-L parameter counts."""
import glob
import os.path as osp

import pytest

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import vpetl_mm  # noqa: E402,F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'dense', '*.py')))
# Mona: 133 C + 9,728 per adapter, two per block; LoRand: alpha 2, beta 8 (seed / more_methods)
COUNTS = {('e3va', 'swin-b'): 1203456 + 3840,  # adapters + the four output norms
          ('mona', 'swin-b'): 3667456, ('mona', 'swin-l'): 5267712,
          ('lorand', 'swin-b'): 1203456, ('lorand', 'swin-l'): 1799040}


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(p)[:-3] for p in CONFIGS])
def test_dense_config(path):
    name = osp.basename(path)
    method = name.split('_')[2]
    arch = 'swin-b' if 'swin-b' in name else 'swin-l'
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    assert backbone.type == 'vpetl_mm.PEFTBackbone'
    assert backbone.method.type == {'mona': 'Mona', 'lorand': 'LoRand', 'e3va': 'E3VA'}[method]
    assert backbone.backbone.init_cfg is None and backbone.pretrained.startswith('pretrained/')
    assert any(h.type == 'vpetl_mm.TrainableCheckpointHook' for h in cfg.custom_hooks)
    dims = backbone.backbone.embed_dims
    channels = [dims, 2 * dims, 4 * dims, 8 * dims]
    if 'coco' in name:
        assert cfg.model.neck.in_channels == channels
    else:
        assert cfg.model.decode_head.in_channels == channels
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    inner = dict(backbone.to_dict(), pretrained=None)
    built = MODELS.build(inner)
    assert sum(p.numel() for p in built.parameters() if p.requires_grad) == COUNTS[method, arch]

"""The video config (BAPAT on HMDB51 with VideoMAE ViT-B) builds the recognizer it describes."""
import os.path as osp

import pytest

pytest.importorskip('mmaction')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import vpetl_mm  # noqa: E402,F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_bapat_hmdb51():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'video',
                                   'vit-b-p16_videomae-k400-pre_bapat_16x4x1_hmdb51.py'))
    assert cfg.default_scope == 'mmaction'
    assert [m['type'] for m in cfg.model.backbone.method] == ['AdaptFormer', 'PATT']
    assert cfg.model.cls_head.num_classes == 51
    init_default_scope('mmaction')
    from mmengine.registry import MODELS
    backbone = dict(cfg.model.backbone.to_dict(), pretrained=None)
    built = MODELS.build(backbone)
    assert sum(p.numel() for p in built.parameters() if p.requires_grad) == 2093184

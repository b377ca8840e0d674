"""An unmodified mmpretrain model-zoo config becomes a PEFT config by wrapping its backbone."""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_zoo_config_wrapped_with_lora():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'examples', 'vit-b_lora_in1k-zoo.py'))
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.backbone.backbone.type == 'VisionTransformer'  # the zoo's own backbone
    assert cfg.model.head.type == 'VisionTransformerClsHead'  # everything else untouched
    cfg.model.backbone.pretrained = None
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    backbone = {n for n in trainable if n.startswith('backbone.')}
    assert sum(p.numel() for n, p in model.named_parameters() if n in backbone) == 294912
    assert trainable - backbone == {n for n, _ in model.head.named_parameters(prefix='head')}

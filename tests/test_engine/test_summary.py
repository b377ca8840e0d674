"""The parameter summary the PEFTSummaryHook logs."""
import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from vpetl_mm.engine import parameter_summary  # noqa: E402
from vpetl_mm.engine.hooks.summary import format_summary  # noqa: E402


def test_summary_rows_and_percent():
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='vpetl_mm.PEFTBackbone',
                          backbone=dict(type='VisionTransformer', arch='b', init_cfg=None),
                          method=dict(type='LoRA', rank=8, targets=('q', 'v'))),
            head=dict(type='LinearClsHead', num_classes=100, in_channels=768)))
    rows = {name: (t, n) for name, t, n in parameter_summary(model)}
    assert rows['backbone'] == (294912, 85798656 + 294912)
    assert rows['head'] == (76900, 76900)
    assert rows['total'] == (294912 + 76900, 85798656 + 294912 + 76900)
    text = format_summary(model)
    assert 'backbone' in text and '294,912' in text and '0.343%' in text
    assert 'PEFT method lora: LoRA (mergeable)' in text


def test_summary_counts_sparse_method_elements():
    """GPS turns ``requires_grad`` on for whole weights but trains selected entries: the
    backbone row counts the tuned elements (ViT-B/16: 167,424), not the 85M of the tensors."""
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='vpetl_mm.PEFTBackbone',
                          backbone=dict(type='VisionTransformer', arch='b', init_cfg=None),
                          method=dict(type='GPS')),
            head=dict(type='LinearClsHead', num_classes=100, in_channels=768)))
    rows = {name: (t, n) for name, t, n in parameter_summary(model)}
    assert rows['backbone'] == (167424, 85798656)
    assert rows['total'] == (167424 + 76900, 85798656 + 76900)
    text = format_summary(model)
    assert '167,424' in text.splitlines()[1] and 'tunes 167,424 elements' in text

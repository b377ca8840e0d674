"""Res-Tuning-Bypass: the bypass formula, no activations inside the frozen blocks, training,
the round trip and its refusal on Swin."""
import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_lst import saved_bytes  # noqa: E402
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             batch, classifier_cfg,
                                                             pretrained_file)
from tests.test_models.checks import (assert_round_trip, moved,  # noqa: E402
                                      train_and_check_frozen)

BYPASS = dict(type='Res-Tuning-Bypass', length=4)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def test_formula(tmp_path):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, BYPASS, path))
    model.eval()
    rt = model.backbone.peft.methods['res-tuning-bypass']
    with torch.no_grad():
        for tuner in (*rt.laterals, *rt.verticals):
            tuner.up.weight.normal_(0, 0.1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, _ = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), tokens], 1) + plain.pos_embed
        b = tokens
        for i, layer in enumerate(plain.layers):
            tokens = layer(tokens)
            b = rt.laterals[i](tokens) + rt.verticals[i](b)
        torch.testing.assert_close(model.backbone(x)[-1], plain.ln1(b)[:, 0], rtol=1e-5,
                                   atol=1e-5)


def test_memory_training_round_trip(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(TINY_VIT, BYPASS, path)
    model = MODELS.build(cfg)
    model.train()
    x = torch.randn(2, 3, 32, 32)
    assert saved_bytes(model, x, True) == 0 and saved_bytes(model, x, False) > 0
    before, after = train_and_check_frozen(model, batch())
    assert moved(before, after, '.laterals.')
    assert_round_trip(model, MODELS.build(cfg), x)


def test_swin_refused(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    with pytest.raises(TypeError, match='changes width or length'):
        MODELS.build(classifier_cfg(TINY_SWIN, BYPASS, path))

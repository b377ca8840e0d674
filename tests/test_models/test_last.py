"""LAST: identity at initialisation, the side formula, no activations inside the frozen blocks,
training and the round trip."""
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

LAST = dict(type='LAST', rank=4, gap=2)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def test_identity_then_formula(tmp_path):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, LAST, path))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x)[-1], plain(x)[-1], rtol=0, atol=1e-6)
        last = model.backbone.peft.methods['last']
        for lsa in last.lsa:
            lsa.up.weight.normal_(0, 0.2)
        tokens, _ = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), tokens], 1) + plain.pos_embed
        side = torch.zeros_like(tokens)
        for i, layer in enumerate(plain.layers):
            tokens = layer(tokens)
            if i % 2 == 1:
                side = side + last.lsa[i // 2](tokens + side)
        torch.testing.assert_close(model.backbone(x)[-1], plain.ln1(tokens + side)[:, 0],
                                   rtol=1e-5, atol=1e-5)


def test_memory_training_round_trip(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(TINY_VIT, LAST, path)
    model = MODELS.build(cfg)
    model.train()
    x = torch.randn(2, 3, 32, 32)
    assert saved_bytes(model, x, True) == 0 and saved_bytes(model, x, False) > 0
    before, after = train_and_check_frozen(model, batch(), steps=2)
    assert moved(before, after, '.lsa.')
    assert_round_trip(model, MODELS.build(cfg), x)


def test_errors(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    with pytest.raises(ValueError, match='gap=3 does not divide the 4 blocks'):
        MODELS.build(classifier_cfg(TINY_VIT, dict(type='LAST', gap=3), path))
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    with pytest.raises(TypeError, match='changes width or length'):
        MODELS.build(classifier_cfg(TINY_SWIN, LAST, path))

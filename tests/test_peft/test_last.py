"""LAST: the init (identity), the side formula written out in plain torch, no activations inside
the frozen blocks, training and the round trip."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import (assert_uniform, embed, layer_norm,  # noqa: E402
                                         saved_bytes)
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             batch, classifier_cfg,
                                                             pretrained_file)
from tests.test_models.checks import (assert_round_trip, moved,  # noqa: E402
                                      train_and_check_frozen)

LAST = dict(type='LAST', rank=4, gap=2)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def low_rank_attention(lsa, x):
    """LSA from its tensors: ``up(softmax(Q K^T / sqrt(r)) V)``, ``Q, K, V = LN(x) A_{Q,K,V}``."""
    rank = lsa.qkv.weight.shape[0] // 3
    q, k, v = F.linear(layer_norm(x, lsa.norm), lsa.qkv.weight).split(rank, -1)
    weights = torch.softmax(q @ k.transpose(-2, -1) / rank**0.5, -1)
    return F.linear(weights @ v, lsa.up.weight, lsa.up.bias)


def test_identity_then_formula(tmp_path):
    """At init ``up`` is exactly zero (the output is the backbone's), ``A_{Q,K,V}`` are
    bias-free nn.Linear weights, U(+-1/sqrt(C)), the norms 1 / 0. Then, with random ``up`` and
    norms: ``s_i = s_{i-1} + LSA_i(z_i + s_{i-1})`` on the group outputs ``z_i`` (gap 2), the
    output ``LN(z_m + s_m)``."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, LAST, path))
    model.eval()
    last = model.backbone.peft.methods['last']
    assert len(last.lsa) == 2
    for lsa in last.lsa:
        assert not lsa.up.weight.any() and not lsa.up.bias.any()
        assert lsa.qkv.bias is None and lsa.qkv.weight.shape == (3 * 4, 32)
        assert torch.equal(lsa.norm.weight, torch.ones(32)) and not lsa.norm.bias.any()
    assert_uniform(torch.cat([lsa.qkv.weight.flatten() for lsa in last.lsa]), 32**-0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x)[-1], plain(x)[-1], rtol=0, atol=1e-6)
        for lsa in last.lsa:
            for p in (lsa.up.weight, lsa.up.bias, lsa.norm.bias):
                p.normal_(0, 0.3)
            lsa.norm.weight.normal_(1, 0.3)
        tokens = embed(plain, x)
        side = torch.zeros_like(tokens)
        for i, layer in enumerate(plain.layers):
            tokens = layer(tokens)
            if i % 2 == 1:
                side = side + low_rank_attention(last.lsa[i // 2], tokens + side)
        out = model.backbone(x)[-1]
        torch.testing.assert_close(out, plain.ln1(tokens + side)[:, 0], rtol=1e-5, atol=1e-5)
        assert (out - plain(x)[-1]).abs().max() > 1e-2


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

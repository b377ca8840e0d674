"""Prefix tuning: attention with prefix keys / values by hand, the toolbox ViTs, Swin refused,
training and the round trip."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             batch, classifier_cfg,
                                                             pretrained_file)
from tests.test_models.test_specs_toolboxes import features, setup  # noqa: E402
from tests.test_models.checks import (assert_round_trip, moved,  # noqa: E402
                                      train_and_check_frozen)

PREFIX = dict(type='PrefixTuning', length=3, mid=8)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def with_prefixes(generator, k, v):
    """``k``, ``v`` ``(B, heads, N, d)`` with the ``L`` prefix keys / values first, from the
    generator's tensors: ``[P_k, P_v] = up(tanh(down(E)))`` ``(L, 2C)``."""
    b, heads, _, d = k.shape
    hidden = torch.tanh(F.linear(generator.embedding, generator.down.weight,
                                 generator.down.bias))
    prefix = F.linear(hidden, generator.up.weight, generator.up.bias).reshape(-1, 2, heads, d)
    pk, pv = prefix[:, 0].transpose(0, 1), prefix[:, 1].transpose(0, 1)  # (heads, L, d)
    return (torch.cat([pk.expand(b, -1, -1, -1), k], 2),
            torch.cat([pv.expand(b, -1, -1, -1), v], 2))


def test_attention_with_prefixes(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    model = MODELS.build(classifier_cfg(TINY_VIT, PREFIX, path))
    model.eval()
    attn = model.backbone.layers[0].attn
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        q, k, v = attn.qkv(x).reshape(2, 5, 3, 2, 16).permute(2, 0, 3, 1, 4)
        k, v = with_prefixes(attn.prefix, k, v)
        weights = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1)  # d = 16
        expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 32))
        torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_training_and_round_trip(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(TINY_VIT, PREFIX, path)
    model = MODELS.build(cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith('head.') or '.attn.prefix.' in n for n in trainable), trainable
    before, after = train_and_check_frozen(model, batch())
    assert moved(before, after, '.prefix.embedding')
    assert_round_trip(model, MODELS.build(cfg), torch.randn(2, 3, 32, 32))


def test_window_attention_with_prefixes(tmp_path):
    """Swin: an identity key / value transform leaves the backbone exact; prefixes are
    prepended to every window, the position bias and the shift mask padded with zeros."""
    plain, path = pretrained_file(tmp_path, TINY_SWIN)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_SWIN, PREFIX, path))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    spec = model.backbone.peft.spec
    for block in spec.blocks:  # drop the prefixes: the installed forward must be the original
        block.attn.w_msa._vpetl_kv = [lambda k, v: (k, v)]
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x)[-1], plain(x)[-1], rtol=1e-5, atol=1e-5)
    msa = spec.blocks[1].attn.w_msa  # a shifted block: called with a mask
    generator = spec.blocks[1].attn.prefix
    msa._vpetl_kv = [generator]
    tokens, mask = torch.randn(8, 16, 16), torch.zeros(4, 16, 16)
    mask[:, :8, 8:] = -100.0
    with torch.no_grad():
        q, k, v = msa.qkv(tokens).reshape(8, 16, 3, 2, 8).permute(2, 0, 3, 1, 4)
        k, v = with_prefixes(generator, k, v)
        bias = msa.relative_position_bias_table[msa.relative_position_index.view(-1)].view(
            16, 16, 2).permute(2, 0, 1)
        logits = (q * msa.scale) @ k.transpose(-1, -2)  # (8, 2, 16, 3 + 16)
        logits[..., 3:] += bias
        logits = (logits.view(2, 4, 2, 16, 19) + torch.cat(
            [torch.zeros(4, 16, 3), mask], -1)[None, :, None]).view(8, 2, 16, 19)
        out = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(8, 16, 16)
        torch.testing.assert_close(msa(tokens, mask), msa.proj(out), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('family', ['mmaction-vit', 'mmseg-vit', 'mmdet-swin', 'mmseg-swin',
                                    'mmaction-swin3d'])
def test_toolbox_families(family, tmp_path):
    plain, build_model, batch_fn = setup(family, tmp_path)
    if family == 'mmaction-swin3d':
        with pytest.raises(TypeError, match='no access to the attention keys'):
            build_model(PREFIX)
        return
    model = build_model(PREFIX)
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        out, ref = features(model.backbone, x), features(plain, x)
    assert out.shape == ref.shape and (out - ref).abs().max() > 1e-5
    before, after = train_and_check_frozen(model, data)
    assert moved(before, after, '.prefix.')

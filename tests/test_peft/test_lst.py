"""LST: the init, the ladder formula written out in plain torch, no activations kept inside the
frozen blocks, training, refusal on Swin, the toolbox ViTs and the round trip."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.checks import (assert_round_trip, moved,  # noqa: E402
                                      train_and_check_frozen)
from tests.test_models.reference import (assert_uniform, attention, embed,  # noqa: E402
                                         layer_norm, saved_bytes, vit_b)
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             batch, classifier_cfg,
                                                             pretrained_file)
from tests.test_models.test_specs_toolboxes import features, setup  # noqa: E402

LST = dict(type='LST', reduction=4, num_heads=2)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def side_layer(layer, h):
    """A pre-norm side layer from its tensors: ``h += MHA(LN1 h)``; ``h += W2 GELU(W1 LN2 h)``."""
    x = layer_norm(h, layer.norm1)
    h = h + attention(x, x, layer.attn)
    fc1, fc2 = layer.mlp[0], layer.mlp[2]
    z = F.gelu(F.linear(layer_norm(h, layer.norm2), fc1.weight, fc1.bias))
    return h + F.linear(z, fc2.weight, fc2.bias)


def test_init():
    """Gates exactly zero (``g = 1/2``), ``T = 0.1``; the bias-free down / ladders / up and the
    side linears uniform in +-1/sqrt(fan_in) (nn.Linear), the side attention's input
    projection xavier-uniform with zero biases, the side norms 1 / 0."""
    lst = vit_b(dict(type='LST')).peft.methods['lst']
    assert lst.gate_temperature == 0.1
    assert lst.gates.shape == (12, ) and not lst.gates.any()
    assert lst.down.bias is None and lst.up.bias is None
    assert all(ladder.bias is None for ladder in lst.ladders)
    assert_uniform(torch.cat([lst.down.weight.flatten(), *(m.weight.flatten()
                                                         for m in lst.ladders)]), 768**-0.5)
    assert_uniform(lst.up.weight, 96**-0.5)
    for layer in lst.side:
        assert_uniform(layer.attn.in_proj_weight, (6 / (96 + 3 * 96))**0.5)
        assert not layer.attn.in_proj_bias.any() and not layer.attn.out_proj.bias.any()
        assert torch.equal(layer.norm1.weight, torch.ones(96)) and not layer.norm2.bias.any()
    assert_uniform(torch.cat([layer.mlp[0].weight.flatten() for layer in lst.side]), 96**-0.5)


def test_formula(tmp_path):
    """Every step written out from the tensors, with random gates, biases and norms and a
    temperature of 0.5: ``h = down(z_0)``, ``h = side_i(g_i h + (1 - g_i) ladder_i(y_i))``
    with ``g_i = sigmoid(alpha_i / T)``, the output ``LN(up(h))``."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, dict(LST, gate_temperature=0.5), path))
    model.eval()
    lst = model.backbone.peft.methods['lst']
    with torch.no_grad():
        for name, p in lst.named_parameters():  # the zero / one-initialised tensors
            if name == 'gates' or 'bias' in name or '.norm' in name:
                p.normal_(0.5 if 'norm' in name and 'weight' in name else 0.0, 0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = embed(plain, x)
        h = F.linear(tokens, lst.down.weight)
        for i, layer in enumerate(plain.layers):
            tokens = layer(tokens)
            g = torch.sigmoid(lst.gates[i] / 0.5)
            h = side_layer(lst.side[i], g * h + (1 - g) * F.linear(tokens, lst.ladders[i].weight))
        expected = plain.ln1(F.linear(h, lst.up.weight))[:, 0]
        out = model.backbone(x)[-1]
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert (out - plain(x)[-1]).abs().max() > 1e-2


def test_backbone_keeps_no_activations(tmp_path):
    """The frozen blocks record nothing for backward (their work runs with autograd off);
    the ladders' taps and the side network do. An adapter inside the blocks does record."""
    _, path = pretrained_file(tmp_path, TINY_VIT)
    lst = MODELS.build(classifier_cfg(TINY_VIT, LST, path))
    adapter = MODELS.build(classifier_cfg(TINY_VIT, dict(type='Adapter', bottleneck=4), path))
    x = torch.randn(2, 3, 32, 32)
    lst.train()
    adapter.train()
    assert saved_bytes(lst, x, True) == 0
    assert saved_bytes(lst, x, False) > 0  # the ladder taps and the side network
    assert saved_bytes(adapter, x, True) > 0
    assert torch.is_grad_enabled()  # the caller's grad mode is back


def test_train_step_and_round_trip(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(TINY_VIT, LST, path)
    model = MODELS.build(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = set()
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.register_hook(lambda g, n=n: grads.add(n) if g.abs().sum() > 0 else None)
    model.train()
    log_vars = model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.parameters(),
                                                                      lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(('head.', 'backbone.peft.methods.lst.')) for n in trainable)
    assert {n for n in grads if '.ladders.' in n} and {n for n in grads if '.side.' in n}
    for n, p in model.named_parameters():
        assert p.requires_grad or torch.equal(p, before[n]), n
    assert_round_trip(model, MODELS.build(cfg), torch.randn(2, 3, 32, 32))


def test_errors(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    with pytest.raises(TypeError, match='changes width or length'):
        MODELS.build(classifier_cfg(TINY_SWIN, LST, path))
    _, path = pretrained_file(tmp_path, TINY_VIT)
    with pytest.raises(ValueError, match='does not divide width 32'):
        MODELS.build(classifier_cfg(TINY_VIT, dict(type='LST', reduction=5), path))


@pytest.mark.parametrize('family', ['mmaction-vit', 'mmseg-vit'])
def test_toolbox_vits(family, tmp_path):
    plain, build_model, batch_fn = setup(family, tmp_path)
    model = build_model(LST)
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        assert features(model.backbone, x).shape == features(plain, x).shape
    before, after = train_and_check_frozen(model, data)
    assert moved(before, after, '.lst.side.')

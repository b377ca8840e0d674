"""KAdaptation on the CLIP image tower (mmpretrain VisionTransformer, pre_norm, QuickGELU):
formula, a working initialisation, exact merge."""
import copy

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401

TINY_CLIP = dict(type='VisionTransformer',
                 arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=128),
                 img_size=32, patch_size=8, pre_norm=True, qkv_bias=True,
                 norm_cfg=dict(type='LN', eps=1e-5),
                 layer_cfgs=dict(act_cfg=dict(type='QuickGELU')), init_cfg=None)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def build(method, seed=0):
    torch.manual_seed(seed)
    plain = MODELS.build(copy.deepcopy(TINY_CLIP))
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_CLIP),
                              method=method))
    model.load_state_dict(plain.state_dict(), strict=False)
    plain.eval()
    model.eval()
    return plain, model


def kron(rule_a, rule_b, u, v):
    """sum_i (a_i b_i^T) (x) (u_i v_i^T), written out with torch.kron."""
    rule = rule_a @ rule_b
    return sum(torch.kron(rule[i], u[i] @ v[i]) for i in range(rule.shape[0]))


def test_formula_q_and_v_only():
    plain, model = build(dict(type='KAdaptation', phm_dim=4, scale=2.0, dropout=0.5))
    method = model.peft.methods['kadaptation']
    with torch.no_grad():
        for layer in model.layers:
            for delta in layer.attn.kadaptation.deltas.values():
                delta.v.normal_()
            layer.attn.kadaptation.bias.normal_()
    captured = {}
    model.layers[0].attn.qkv.register_forward_hook(
        lambda m, a, out: captured.update(x=a[0], out=out))
    plain.layers[0].attn.qkv.register_forward_hook(
        lambda m, a, out: captured.update(ref=out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
        plain(x)
        inp, out = captured['x'], captured['out']
        ref = plain.layers[0].attn.qkv(inp)  # the frozen qkv on the same input
        layer = model.layers[0].attn.kadaptation
        for target, rows in (('q', slice(0, 32)), ('v', slice(64, 96))):
            rule = method.rules[target]
            h = kron(rule.a, rule.b, layer.deltas[target].u, layer.deltas[target].v)
            torch.testing.assert_close(out[..., rows], ref[..., rows] + 2.0 * inp @ h + layer.bias,
                                       rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[..., 32:64], ref[..., 32:64], rtol=0, atol=0)  # k


def test_init_is_identity_and_learns():
    """The released code zeroes both rank-1 factors, so nothing learns; here every factor and
    the shared rules receive gradients within two steps."""
    plain, model = build(dict(type='KAdaptation', phm_dim=4, dropout=0.0))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], plain(x)[-1], rtol=0, atol=1e-6)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optim = torch.optim.SGD(params.values(), lr=0.1)
    got_grad = set()
    model.train()
    for _ in range(2):
        optim.zero_grad()
        model(x)[-1].pow(2).sum().backward()
        got_grad |= {n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}
        optim.step()
    assert got_grad == set(params), set(params) - got_grad


def test_dropout_acts_on_the_matrix_in_training_only():
    _, model = build(dict(type='KAdaptation', phm_dim=4, dropout=0.5))
    with torch.no_grad():
        for layer in model.layers:
            for delta in layer.attn.kadaptation.deltas.values():
                delta.v.normal_()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x)[-1], model(x)[-1])  # eval: deterministic
        model.train()
        assert not torch.equal(model(x)[-1], model(x)[-1])


def test_merge_is_exact_and_plain():
    plain, model = build(dict(type='KAdaptation', phm_dim=4, scale=1.0))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        unmerged = model(x)[-1]
        assert (unmerged - plain(x)[-1]).abs().max() > 1e-3
        model.peft.merge()
        merged = model(x)[-1]
    assert (merged - unmerged).abs().max() < 1e-5
    assert set(model.state_dict()) == set(plain.state_dict())


def test_bad_settings():
    with pytest.raises(ValueError, match='not divisible by phm_dim=5'):
        build(dict(type='KAdaptation', phm_dim=5))
    with pytest.raises(ValueError, match="targets=\\['o'\\]"):
        build(dict(type='KAdaptation', targets=('o', )))

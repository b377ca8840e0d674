"""KAdaptation on the CLIP image tower (mmpretrain VisionTransformer, pre_norm, QuickGELU):
the formula written out in plain torch, a working initialisation, exact merge."""
import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_uniform, vit_b  # noqa: E402

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


def kadaptation_by_hand(plain, model, x, scale):
    """The CLIP ViT forward written out on the plain backbone's tensors, every attention with
    ``q += s z H_q + b`` and ``v += s z H_v + b`` (``z`` = LN1 x, ``H`` = :func:`kron` of the
    shared rule and the block's factors, ``b`` the block's shared bias), k untouched."""
    method = model.peft.methods['kadaptation']
    tokens, _ = plain.patch_embed(x)
    tokens = torch.cat([plain.cls_token.expand(len(x), -1, -1), tokens], 1) + plain.pos_embed
    tokens = plain.pre_norm(tokens)
    for layer, ours in zip(plain.layers, model.layers):
        tensors = ours.attn.kadaptation
        z = layer.ln1(tokens)
        b, n, c = z.shape
        heads = layer.attn.num_heads
        q, k, v = F.linear(z, layer.attn.qkv.weight, layer.attn.qkv.bias).chunk(3, -1)
        q, v = ((t + scale * z @ kron(method.rules[name].a, method.rules[name].b,
                                      tensors.deltas[name].u, tensors.deltas[name].v)
                 + tensors.bias) for t, name in ((q, 'q'), (v, 'v')))
        q, k, v = (t.reshape(b, n, heads, -1).transpose(1, 2) for t in (q, k, v))
        out = torch.softmax(q @ k.transpose(-2, -1) / (c // heads)**0.5, -1) @ v
        out = out.transpose(1, 2).reshape(b, n, c)
        h = tokens + F.linear(out, layer.attn.proj.weight, layer.attn.proj.bias)
        tokens = h + layer.ffn.layers(layer.ln2(h))
    return plain.ln1(tokens)[:, 0]


def test_formula_q_and_v_only():
    """Scale 2, every factor drawn (the zero ``v`` factors and bias, the +-0.01 rules made
    large), dropout 0.5 (off in eval): the wrapped backbone equals
    :func:`kadaptation_by_hand`."""
    plain, model = build(dict(type='KAdaptation', phm_dim=4, scale=2.0, dropout=0.5))
    method = model.peft.methods['kadaptation']
    with torch.no_grad():
        for rule in method.rules.values():
            rule.a.normal_(0, 0.5)
            rule.b.normal_(0, 0.5)
        for layer in model.layers:
            for delta in layer.attn.kadaptation.deltas.values():
                delta.v.normal_()
            layer.attn.kadaptation.bias.normal_()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)[-1]
        assert (out - plain(x)[-1]).abs().max() > 1e-2
        torch.testing.assert_close(out, kadaptation_by_hand(plain, model, x, 2.0), rtol=1e-5,
                                   atol=1e-5)


def test_init_is_identity_and_learns():
    """The released code zeroes both rank-1 factors, so nothing learns; here ``u``
    glorot-uniform per factor, ``v`` and the bias zero, the shared rules U(+-0.01) (checked on
    ViT-B, n = 32, r = 1), the output the backbone's, and every factor and the shared rules
    receive gradients within two steps."""
    big = vit_b(dict(type='KAdaptation'))
    rules = big.peft.methods['kadaptation'].rules
    deltas = [d for layer in big.layers for d in layer.attn.kadaptation.deltas.values()]
    assert len(deltas) == 24 and deltas[0].u.shape == (32, 24, 1)
    assert_uniform(torch.cat([d.u.flatten() for d in deltas]), (6 / (24 + 1))**0.5)
    assert all(not d.v.any() for d in deltas)
    assert all(not layer.attn.kadaptation.bias.any() for layer in big.layers)
    assert_uniform(torch.cat([t.flatten() for r in rules.values() for t in (r.a, r.b)]), 0.01)
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


def test_rule_shapes_init_and_accepted_settings():
    """``A_i = a_i b_i^T``: ``a`` ``(n, n, 1)`` and ``b`` ``(n, 1, n)``, both uniform in
    +-0.01 (signs of both kinds); k may be a target; n = 1 is allowed."""
    from vpetl_mm.peft.kadaptation import KAdaptation, SharedRule
    torch.manual_seed(0)
    rule = SharedRule(4)
    assert rule.a.shape == (4, 4, 1) and rule.b.shape == (4, 1, 4)
    for t in (rule.a, rule.b):
        assert t.abs().max() <= 0.01 and t.min() < -0.005 and t.max() > 0.005
    assert rule().shape == (4, 4, 4)
    assert KAdaptation(targets=('k', )).targets == ('k', )
    assert KAdaptation(phm_dim=1).phm_dim == 1
    _, model = build(dict(type='KAdaptation', phm_dim=4, targets=('k', )))
    assert set(model.layers[0].attn.kadaptation.deltas) == {'k'}

"""Mona, LoRand and SNF: inits and formulas written out in plain torch on the mmpretrain ViT
(prefix tokens pass Mona's convolutions), the toolbox families, and the Swin-B counts."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import (assert_normal, assert_uniform,  # noqa: E402
                                         fix_drop_path, vit_b)
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_VIT,  # noqa: E402
                                                             pretrained_file)
from tests.test_models.test_specs_toolboxes import FAMILIES, features, setup  # noqa: E402


def build(tmp_path, method):
    init_default_scope('mmpretrain')
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                              pretrained=path, method=method))
    plain.eval()
    model.eval()
    return plain, model


def mona_by_hand(a, x, grid):
    """The Mona formula on (B, N, C) tokens with one cls token and an (h, w) grid, from the
    adapter's tensors: ``x + up(GELU(MS(down(s1 LN(x) + s2 x))))`` with
    ``MS(z) = y + P(y)``, ``y = (DW3(z) + DW5(z) + DW7(z)) / 3 + z`` (same padding)."""
    z = F.linear(F.layer_norm(x, (x.shape[-1], ), a.norm.weight, a.norm.bias) * a.gamma +
                 x * a.gammax, a.down.weight, a.down.bias)
    g = z[:, 1:].transpose(1, 2).reshape(len(x), -1, *grid)
    y = sum(F.conv2d(g, c.weight, c.bias, padding=c.weight.shape[-1] // 2, groups=g.shape[1])
            for c in a.conv.convs) / 3 + g
    y = y + F.conv2d(y, a.conv.projector.weight, a.conv.projector.bias)
    z = torch.cat([z[:, :1], y.flatten(2).transpose(1, 2)], 1)
    return x + F.linear(F.gelu(z), a.up.weight, a.up.bias)


def test_mona_init():
    """The authors' init (ViT-B, bottleneck 64): ``s1 = 1e-6``, ``s2 = 1``, the norm 1 / 0,
    the projections N(0, 0.02^2) (truncated at +-2, i.e. not at all) with zero biases, the
    depthwise 3 / 5 / 7 and 1x1 convolutions PyTorch's default U(+-1/sqrt(fan_in))."""
    init_default_scope('mmpretrain')
    model = vit_b(dict(type='Mona'))
    adapters = [a for layer in model.layers for a in (layer.mona_attn, layer.mona_mlp)]
    for a in adapters:
        assert torch.equal(a.gamma, torch.full((768, ), 1e-6))
        assert torch.equal(a.gammax, torch.ones(768))
        assert torch.equal(a.norm.weight, torch.ones(768)) and not a.norm.bias.any()
        assert not a.down.bias.any() and not a.up.bias.any()
        assert a.down.weight.shape == (64, 768) and a.dropout.p == 0.1
        assert [c.weight.shape for c in a.conv.convs] == [(64, 1, k, k) for k in (3, 5, 7)]
    for name in ('down', 'up'):
        assert_normal(torch.cat([getattr(a, name).weight.flatten() for a in adapters]), 0.02)
    for k, i in ((3, 0), (5, 1), (7, 2)):
        assert_uniform(torch.cat([a.conv.convs[i].weight.flatten() for a in adapters]), 1 / k)
    assert_uniform(torch.cat([a.conv.projector.weight.flatten() for a in adapters]), 1 / 8)


def test_mona_formula(tmp_path):
    """With every scale, norm and bias drawn (``s1``, ``s2`` far from 1e-6 / 1) and drop-path a
    fixed 1/2: ``h = Mona1(x + DP(Attn(LN1 x)))``, ``y = Mona2(h + DP(MLP(LN2 h)))``."""
    plain, model = build(tmp_path, dict(type='Mona', bottleneck=8))
    fix_drop_path(plain, model)
    with torch.no_grad():
        for layer in model.layers:
            for a in (layer.mona_attn, layer.mona_mlp):
                for p in (a.gamma, a.norm.bias, a.down.bias, a.up.bias):
                    p.normal_(0, 0.5)
                for p in (a.gammax, a.norm.weight):
                    p.normal_(1, 0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, grid = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), tokens], 1) + plain.pos_embed
        for layer, ours in zip(plain.layers, model.layers):
            h = tokens + layer.attn(layer.ln1(tokens))
            h = mona_by_hand(ours.mona_attn, h, grid)
            tokens = mona_by_hand(ours.mona_mlp, layer.ffn(layer.ln2(h), identity=h), grid)
        expected = plain.ln1(tokens)[:, 0]
        torch.testing.assert_close(model(x)[-1], expected, rtol=1e-5, atol=1e-5)


def synthesized(layer):
    """``W = sum_i A_i G_i B_i`` ``(in, out)`` from a LoRand projection's factor tensors."""
    return sum(layer.a[i] @ layer.g[i] @ layer.b[i] for i in range(len(layer.a)))


def lorand_by_hand(ad, h):
    """``h + P2(GELU(P1(h)))`` with ``P(x) = x W + b`` from the adapter's tensors."""
    return h + F.gelu(h @ synthesized(ad.down) + ad.down.bias) @ synthesized(ad.up) + ad.up.bias


def test_lorand_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='LoRand', branches=2, kernel=3))
    layer = model.layers[0].lorand_attn
    torch.testing.assert_close(layer.down.weight(), synthesized(layer.down))
    assert layer.down.weight().shape == (32, 16)  # C -> C / 2
    for ref, ours in zip(plain.layers, model.layers):
        ref.attn.proj.register_forward_hook(
            lambda m, a, out, ad=ours.lorand_attn: lorand_by_hand(ad, out))
        ref.ffn.layers.register_forward_hook(
            lambda m, a, out, ad=ours.lorand_mlp: lorand_by_hand(ad, out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], plain(x)[-1], rtol=0, atol=1e-6)
        h = torch.randn(3, 32)
        torch.testing.assert_close(layer(h), lorand_by_hand(layer, h))


@pytest.mark.parametrize('method', ['Mona', 'LoRand'])
@pytest.mark.parametrize('family', list(FAMILIES))
def test_toolbox_families(family, method, tmp_path):
    plain, build_model, batch_fn = setup(family, tmp_path)
    cfg = dict(type='Mona', bottleneck=8) if method == 'Mona' else dict(type='LoRand', kernel=2)
    if method == 'Mona' and family.startswith('mmaction'):
        with pytest.raises(TypeError, match='2-D token grid'):
            build_model(cfg)
        return
    model = build_model(cfg)
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        out, ref = features(model.backbone, x), features(plain, x)
    assert out.shape == ref.shape and (out - ref).abs().max() > 1e-5
    tag = '.mona_' if method == 'Mona' else '.lorand_'
    in_backbone = {n for n, p in model.named_parameters()
                   if p.requires_grad and n.startswith('backbone.')}
    assert in_backbone and all(tag in n for n in in_backbone)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    params = dict(model.named_parameters())
    for n, p in params.items():
        assert p.requires_grad or torch.equal(p, before[n]), n
    for position in ('attn', 'mlp'):
        assert any(not torch.equal(params[n], before[n]) for n in in_backbone
                   if f'{tag}{position}.' in n), position


@pytest.mark.parametrize('method,count', [('Mona', 3667456), ('LoRand', 1203456)])
def test_swin_b_counts(method, count):
    """Swin-B (IN-22k dims 128..1024, depths 2/2/18/2), the authors' default settings."""
    init_default_scope('mmpretrain')
    backbone = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(type=method),
                                 backbone=dict(type='SwinTransformer', arch='base',
                                               img_size=224, drop_path_rate=0.0,
                                               init_cfg=None)))
    assert sum(p.numel() for p in backbone.parameters() if p.requires_grad) == count


def test_snf_init():
    """The authors' ``flow.py`` init: ``mu``, ``log_sigma`` zero (the affine step is the
    identity), the planar ``w``, ``s`` ``(L, C)`` and ``b`` ``(L,)`` uniform in +-0.01."""
    init_default_scope('mmpretrain')
    model = vit_b(dict(type='SNF'))
    flows = [f for layer in model.layers for f in (layer.snf_attn, layer.snf_mlp)]
    assert flows[0].w.shape == flows[0].s.shape == (16, 768) and flows[0].b.shape == (16, )
    for f in flows:
        assert not f.mu.any() and not f.log_sigma.any()
    for name in ('w', 's', 'b'):
        assert_uniform(torch.cat([getattr(f, name).flatten() for f in flows]), 0.01)


def test_snf_formula(tmp_path):
    """SNF: h = flow1(x) + DP(attn(LN1 x)), y = flow2(h) + DP(MLP(LN2 h)), drop-path a fixed
    1/2 and every flow tensor drawn, flows written out."""
    plain, model = build(tmp_path, dict(type='SNF', flow_length=2))
    fix_drop_path(plain, model)

    def flow(f, x):
        z = f.mu + torch.exp(f.log_sigma) * x
        for i in range(f.w.shape[0]):
            z = z + f.s[i] * torch.tanh((z * f.w[i]).sum(-1, keepdim=True) + f.b[i])
        return z

    with torch.no_grad():
        for layer in model.layers:
            for f in (layer.snf_attn, layer.snf_mlp):
                for p in f.parameters():
                    p.normal_(0, 0.3)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, _ = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), tokens], 1) + plain.pos_embed
        for layer, ours in zip(plain.layers, model.layers):
            h = flow(ours.snf_attn, tokens) + layer.attn(layer.ln1(tokens))
            tokens = flow(ours.snf_mlp, h) + 0.5 * layer.ffn.layers(layer.ln2(h))
        torch.testing.assert_close(model(x)[-1], plain.ln1(tokens)[:, 0], rtol=1e-5, atol=1e-5)


def test_snf_recompute_same_gradients_less_memory():
    """recompute=True: the same outputs and gradients as keeping the flow's steps, with one
    saved (..., C) input per flow instead of one per planar step."""
    from vpetl_mm.peft.snf import NormalizingFlow
    results = {}
    for recompute in (False, True):
        torch.manual_seed(0)
        flow = NormalizingFlow(16, 8, recompute=recompute)
        x = torch.randn(3, 5, 16, requires_grad=True)
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = flow(x)
        (out ** 2).sum().backward()
        results[recompute] = (out.detach(), x.grad, [p.grad for p in flow.parameters()],
                              sum(saved))
    (out0, gx0, gp0, kept0), (out1, gx1, gp1, kept1) = results[False], results[True]
    assert torch.equal(out0, out1) and torch.allclose(gx0, gx1, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(gp0, gp1))
    assert kept1 <= 3 * 5 * 16 + 2 * 16 and kept0 > 8 * 3 * 5 * 16


@pytest.mark.parametrize('family', list(FAMILIES))
def test_snf_toolbox_families(family, tmp_path):
    plain, build_model, batch_fn = setup(family, tmp_path)
    model = build_model(dict(type='SNF', flow_length=1))
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        for n, p in model.named_parameters():  # flows at exactly the identity
            if '.snf_' in n:
                p.zero_()
        torch.testing.assert_close(features(model.backbone, x), features(plain, x), rtol=0,
                                   atol=1e-5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    params = dict(model.named_parameters())
    for n, p in params.items():
        assert p.requires_grad or torch.equal(p, before[n]), n
    assert any(not torch.equal(params[n], before[n]) for n in params if '.snf_' in n)

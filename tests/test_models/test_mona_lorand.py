"""Mona and LoRand: formulas on the mmpretrain ViT (prefix tokens pass Mona's convolutions),
the toolbox families, and their Swin-B counts."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
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
    """The Mona formula on (B, N, C) tokens with one cls token and an (h, w) grid."""
    z = F.linear(F.layer_norm(x, (x.shape[-1], ), a.norm.weight, a.norm.bias) * a.gamma +
                 x * a.gammax, a.down.weight, a.down.bias)
    g = z[:, 1:].transpose(1, 2).reshape(len(x), -1, *grid)
    y = sum(F.conv2d(g, c.weight, c.bias, padding=c.padding, groups=c.groups)
            for c in a.conv.convs) / 3 + g
    y = y + F.conv2d(y, a.conv.projector.weight, a.conv.projector.bias)
    z = torch.cat([z[:, :1], y.flatten(2).transpose(1, 2)], 1)
    return x + F.linear(F.gelu(z), a.up.weight, a.up.bias)


def test_mona_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='Mona', bottleneck=8))
    with torch.no_grad():
        for layer in model.layers:
            for a in (layer.mona_attn, layer.mona_mlp):
                a.gamma.normal_()  # make the scaled LayerNorm visible
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


def test_lorand_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='LoRand', branches=2, kernel=3))
    layer = model.layers[0].lorand_attn
    w = sum(layer.down.a[i] @ layer.down.g[i] @ layer.down.b[i] for i in range(2))
    torch.testing.assert_close(layer.down.weight(), w)
    assert layer.down.weight().shape == (32, 16)  # C -> C / 2
    for ref, ours in zip(plain.layers, model.layers):
        ref.attn.proj.register_forward_hook(lambda m, a, out, ad=ours.lorand_attn: ad(out))
        ref.ffn.layers.register_forward_hook(lambda m, a, out, ad=ours.lorand_mlp: ad(out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], plain(x)[-1], rtol=0, atol=1e-6)
        h = torch.randn(3, 32)
        torch.testing.assert_close(layer(h), h + F.gelu(h @ layer.down.weight() +
                                                        layer.down.bias) @ layer.up.weight() +
                                   layer.up.bias)


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


def test_snf_formula(tmp_path):
    """SNF: h = flow1(x) + attn(LN1 x), y = flow2(h) + MLP(LN2 h), flows written out."""
    plain, model = build(tmp_path, dict(type='SNF', flow_length=2))

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
            tokens = flow(ours.snf_mlp, h) + layer.ffn.layers(layer.ln2(h))
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

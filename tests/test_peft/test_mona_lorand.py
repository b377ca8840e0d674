"""Mona, LoRand and SNF: inits and formulas written out in plain torch on the mmpretrain ViT
(prefix tokens pass Mona's convolutions), the toolbox families, and the Swin-B counts; Mona on
the video backbones (mmaction ViT, Video Swin): its 2-D operator on each frame of the
(T, H, W) grid, by hand, frames independent, training, round trip and the full-size counts."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import MODELS as ENGINE_MODELS  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import (FixedDropPath, assert_normal,  # noqa: E402
                                         assert_uniform, fix_drop_path, vit_b)
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_VIT,  # noqa: E402
                                                             pretrained_file)
from tests.test_models.checks import (assert_round_trip, build_on_meta, moved,  # noqa: E402
                                      train_and_check_frozen)
from tests.test_models.test_specs_toolboxes import (FAMILIES, features, setup,  # noqa: E402
                                                    video_batch)
from vpetl_mm.models.specs.base import TokenLayout  # noqa: E402
from vpetl_mm.peft.mona import Mona, MonaAdapter  # noqa: E402


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


# --- video: Mona's operator on each frame of the (T, H, W) token grid -----------------------
VIDEO_VIT = dict(type='VisionTransformer', img_size=32, patch_size=8, embed_dims=32, depth=4,
                 num_heads=2, mlp_ratio=2, qkv_bias=True, num_frames=4,
                 norm_cfg=dict(type='LN', eps=1e-6), use_mean_pooling=True)
VIDEO_SWIN = dict(type='SwinTransformer3D', arch=dict(embed_dims=16, depths=[2, 2, 2, 2],
                                                      num_heads=[1, 2, 2, 4]),
                  patch_size=(2, 4, 4), window_size=(2, 2, 2), pretrained=None,
                  pretrained2d=False)
#: backbone, input shape, token grid of the ViT's blocks (tubelet 2, patch 8), head channels
VIDEO = {'vit': (VIDEO_VIT, (2, 3, 4, 32, 32), (2, 4, 4), 32),
         'swin3d': (VIDEO_SWIN, (2, 3, 4, 64, 64), None, 128)}


def video_pair(tmp_path, name, method):
    """``(plain, model, x)``: the tiny mmaction backbone ``name`` bare and wrapped with
    ``method`` (same frozen weights, from a pretrained file), in eval mode, drop-path a fixed
    1/2 on both branches of every block (so a module on the residual stream differs from one
    inside a branch), and an input."""
    pytest.importorskip('mmaction')
    init_default_scope('mmaction')
    cfg, shape = VIDEO[name][:2]
    torch.manual_seed(0)
    plain = ENGINE_MODELS.build(copy.deepcopy(cfg))
    for p in plain.parameters():  # non-trivial "pretrained" weights
        p.data.normal_(0, 0.05) if p.dim() > 1 else p.data.uniform_(-0.1, 0.1)
    path = str(tmp_path / f'{name}.pth')
    torch.save({'state_dict': plain.state_dict()}, path)
    model = ENGINE_MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(cfg),
                                     pretrained=path, method=copy.deepcopy(method)))
    plain.eval()
    model.eval()
    for backbone in (plain, model):
        for _, block in video_blocks(backbone):
            block.drop_path = FixedDropPath()
    return plain, model, torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def video_blocks(backbone):
    """``[(stage, block)]`` of an mmaction ViT or SwinTransformer3D, in forward order."""
    if hasattr(backbone, 'blocks'):
        return [(0, b) for b in backbone.blocks]
    return [(s, b) for s, layer in enumerate(backbone.layers) for b in layer.blocks]


def on_frames(fn, x, grid=None):
    """``fn`` on the 5-D ``(B, T, H, W, C)`` view of a block stream: Video Swin's own layout,
    or the mmaction ViT's ``(B, T*H*W, C)`` tokens (T-major, from its Conv3d) with ``grid``."""
    if grid is None:
        return fn(x)
    return fn(x.reshape(x.shape[0], *grid, x.shape[-1])).reshape(x.shape)


def conv2d_frames(x, conv):
    """``conv`` ``(B', C, H, W) -> (B', C, H, W)`` on every frame of ``x`` ``(B, T, H, W, C)``."""
    b, t, h, w, c = x.shape
    y = conv(x.permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w))
    return y.reshape(b, t, c, h, w).permute(0, 1, 3, 4, 2)


def video_outputs(backbone, x):
    """The backbone's output and, for the ViT (mean-pooled output), every token of the last
    block: the input of its final norm."""
    seen = {}
    handle = None
    if hasattr(backbone, 'blocks'):
        handle = backbone.norm.register_forward_pre_hook(lambda m, a: seen.update(t=a[0]))
    out = backbone(x)
    if handle is not None:
        handle.remove()
        return out, seen['t']
    return out, out


def mona_frames_by_hand(a, x):
    """Mona on ``x`` ``(B, T, H, W, C)`` from the adapter's tensors, the published 2-D
    multi-scale convolution on each frame: ``x + up(GELU(MS(down(s1 LN(x) + s2 x))))``."""
    z = F.linear(F.layer_norm(x, (x.shape[-1], ), a.norm.weight, a.norm.bias, a.norm.eps) *
                 a.gamma + x * a.gammax, a.down.weight, a.down.bias)

    def ms(g):
        y = sum(F.conv2d(g, c.weight, c.bias, padding=c.weight.shape[-1] // 2,
                         groups=g.shape[1]) for c in a.conv.convs) / 3 + g
        return y + F.conv2d(y, a.conv.projector.weight, a.conv.projector.bias)

    return x + F.linear(F.gelu(conv2d_frames(z, ms)), a.up.weight, a.up.bias)


def randomize_mona(model):
    with torch.no_grad():
        for m in model.modules():
            if type(m).__name__ == 'MonaAdapter':
                for p in (m.gamma, m.norm.bias, m.down.bias, m.up.bias):
                    p.normal_(0, 0.5)
                for p in (m.gammax, m.norm.weight):
                    p.normal_(1, 0.5)


@pytest.mark.parametrize('name', list(VIDEO))
def test_mona_video_formula(tmp_path, name):
    """mmaction ViT and Video Swin: ``h = Mona1(x + Attn(LN1 x))``, ``y = Mona2(h + MLP(LN2 h))``
    with the 2-D multi-scale convolution on each frame's (H, W) grid, every scale, norm and bias
    drawn; written on the plain backbone's blocks (Video Swin: on its un-windowed
    ``(B, D, H, W, C)`` stream, around its own attention and MLP parts)."""
    plain, model, x = video_pair(tmp_path, name, dict(type='Mona', bottleneck=8))
    randomize_mona(model)
    grid = VIDEO[name][2]
    with torch.no_grad():
        bare = video_outputs(plain, x)
    for (_, ref), (_, ours) in zip(video_blocks(plain), video_blocks(model)):
        def mona(a, t):
            return on_frames(lambda v: mona_frames_by_hand(a, v), t, grid)

        if name == 'vit':
            def forward(t, b=ref, a1=ours.mona_attn, a2=ours.mona_mlp):
                h = mona(a1, t + b.drop_path(b.attn(b.norm1(t))))
                return mona(a2, h + b.drop_path(b.mlp(b.norm2(h))))
        else:
            def forward(t, mask, b=ref, a1=ours.mona_attn, a2=ours.mona_mlp):
                h = mona(a1, t + b.drop_path(b.forward_part1(t, mask)))
                return mona(a2, h + b.forward_part2(h))
        ref.forward = forward
    assert_video_formula(model, plain, x, bare)


def assert_video_formula(model, plain, x, bare):
    """``model``'s outputs equal those of ``plain`` with the hand-written formula installed,
    and differ from ``bare`` (the backbone without the method)."""
    with torch.no_grad():
        outs, refs = video_outputs(model, x), video_outputs(plain, x)
    for out, ref, b in zip(outs, refs, bare):
        assert out.shape == ref.shape == b.shape
        assert (out - b).abs().max() > 1e-2
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_mona_frames_stay_independent():
    """On a ``(T, H, W)`` grid each frame's output is the image adapter on that frame alone
    (with the prefix token): changing frame 1 leaves frames 0 and 2 and the prefix exact."""
    torch.manual_seed(0)
    a = MonaAdapter(16, 8, 0.1).eval()
    randomize_mona(a)
    t, h, w = 3, 4, 5
    x = torch.randn(2, 1 + t * h * w, 16)
    with torch.no_grad():
        y = a(x, TokenLayout(1, (t, h, w)))
        for f in range(t):  # the image operator on [prefix, frame f]
            frame = slice(1 + f * h * w, 1 + (f + 1) * h * w)
            image = a(torch.cat([x[:, :1], x[:, frame]], 1), TokenLayout(1, (h, w)))
            torch.testing.assert_close(y[:, frame], image[:, 1:], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(y[:, :1], image[:, :1], rtol=0, atol=0)
        changed = x.clone()
        changed[:, 1 + h * w:1 + 2 * h * w] += torch.randn(2, h * w, 16)
        z = a(changed, TokenLayout(1, (t, h, w)))
    assert torch.equal(z[:, :1 + h * w], y[:, :1 + h * w])  # prefix and frame 0
    assert torch.equal(z[:, 1 + 2 * h * w:], y[:, 1 + 2 * h * w:])  # frame 2
    assert (z[:, 1 + h * w:1 + 2 * h * w] - y[:, 1 + h * w:1 + 2 * h * w]).abs().min() > 0


def video_recognizer(tmp_path, name, method):
    """``(model, cfg, data, x)``: a Recognizer3D around the tiny video backbone ``name``
    (pretrained from a file) with ``method``, a train batch and a ``mode='tensor'`` input."""
    pytest.importorskip('mmaction')
    init_default_scope('mmaction')
    backbone, _, _, channels = VIDEO[name]
    torch.manual_seed(0)
    plain = ENGINE_MODELS.build(copy.deepcopy(backbone))
    path = str(tmp_path / f'{name}.pth')
    torch.save({'state_dict': plain.state_dict()}, path)
    head = dict(type='TimeSformerHead' if name == 'vit' else 'I3DHead', num_classes=3,
                in_channels=channels)
    cfg = dict(type='Recognizer3D', cls_head=head,
               backbone=dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(backbone),
                             pretrained=path, method=method),
               data_preprocessor=dict(type='ActionDataPreprocessor', format_shape='NCTHW'))
    data, x = video_batch()
    return ENGINE_MODELS.build(copy.deepcopy(cfg)), cfg, data, x[:, None]


@pytest.mark.parametrize('name', list(VIDEO))
def test_mona_video_training_and_round_trip(tmp_path, name):
    """Mona is not zero-initialised (the up projections start random, as the authors'), so it
    is not the identity at initialisation; one step moves both adapters and no frozen weight,
    and the trainable-only state dict restores a fresh model exactly."""
    model, cfg, data, x = video_recognizer(tmp_path, name, dict(type='Mona', bottleneck=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith('cls_head.') or '.mona_' in n for n in trainable), trainable
    before, after = train_and_check_frozen(model, data)
    assert moved(before, after, '.mona_attn.') and moved(before, after, '.mona_mlp.')
    assert_round_trip(model, ENGINE_MODELS.build(copy.deepcopy(cfg)), x)


def video_counts(method):
    """Trainable parameters of ``method`` on the full-size mmaction VideoMAE ViT-B (8 frames)
    and Video Swin-B (window 8x7x7), built on the meta device."""
    pytest.importorskip('mmaction')
    init_default_scope('mmaction')
    counts = []
    for backbone in (dict(type='VisionTransformer', img_size=224, patch_size=16, embed_dims=768,
                          depth=12, num_heads=12, mlp_ratio=4, qkv_bias=True, num_frames=8),
                     dict(type='SwinTransformer3D', arch='base', patch_size=(2, 4, 4),
                          window_size=(8, 7, 7), pretrained=None, pretrained2d=False)):
        model = build_on_meta(ENGINE_MODELS, dict(type='vpetl_mm.PEFTBackbone',
                                                  backbone=backbone, method=method))
        counts.append(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return counts


def base_method(name):
    """The ``peft_method`` of ``configs/_base_/peft/<name>``."""
    import os.path as osp

    from mmengine.config import Config
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    return Config.fromfile(osp.join(root, 'configs', '_base_', 'peft', name)).peft_method


def test_mona_video_counts():
    """configs/_base_/peft/mona.py: the image counts, since the convolutions stay 2-D (ViT-B
    2,684,928 as on the image ViT-B/16; Video Swin-B 3,667,456 as on Swin-B)."""
    assert video_counts(base_method('mona.py').to_dict()) == [2684928, 3667456]


def test_mona_refuses_other_grid_ranks():
    """The video grids are served; a grid of another rank is refused, naming it."""

    class FourDSpec:
        grid_rank = 4

    with pytest.raises(TypeError, match=r'\(T, H, W\) token grid; FourDSpec has 4-D grids'):
        Mona().attach(None, FourDSpec())


def test_lorand_init_bounds_and_settings():
    """The authors' init: every factor kaiming-uniform (a=sqrt(5): bound 1/sqrt(fan_in), the
    fan-in of a 2-D factor being its second size), the bias uniform in +-1/sqrt(in); every
    setting must be >= 1, and 1 is allowed."""
    from vpetl_mm.peft.lorand import LoRand, SynthesizedLinear
    torch.manual_seed(0)
    layer = SynthesizedLinear(768, 64, 2, 8)
    for t, bound in ((layer.a, 8 ** -0.5), (layer.g, 8 ** -0.5), (layer.b, 64 ** -0.5),
                     (layer.bias, 768 ** -0.5)):
        assert t.abs().max() <= bound and t.max() > 0.9 * bound and t.min() < -0.9 * bound
    assert LoRand(branches=1, kernel=1, factor=1).factor == 1
    for kwargs, got in ((dict(branches=0), '0, 8, 2'), (dict(kernel=0), '2, 0, 2'),
                        (dict(factor=0), '2, 8, 0')):
        with pytest.raises(ValueError, match=f'LoRand branches, kernel and factor must be >= 1, '
                           f'got {got}'):
            LoRand(**kwargs)


def test_snf_recompute_saves_less_and_gives_the_same_gradients():
    """``recompute`` runs each flow under activation checkpointing when it trains: fewer
    tensors kept for backward, the same gradients; a flow of length 0 is accepted."""
    from vpetl_mm.peft.snf import NormalizingFlow
    torch.manual_seed(0)
    flows = {r: NormalizingFlow(8, 3, recompute=r) for r in (True, False)}
    flows[False].load_state_dict(flows[True].state_dict())
    x = torch.randn(2, 5, 8)
    saved, grads = {}, {}
    for r, flow in flows.items():
        count = [0]
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t, c=count: c.__setitem__(0, c[0] + 1) or t, lambda t: t):
            out = flow(x)
        saved[r] = count[0]
        out.square().sum().backward()
        grads[r] = {n: p.grad for n, p in flow.named_parameters()}
    assert saved[True] < saved[False]
    for n in grads[True]:
        torch.testing.assert_close(grads[True][n], grads[False][n])
    with torch.no_grad():
        torch.testing.assert_close(flows[True](x), flows[False](x))
    assert NormalizingFlow(8, 0)(x).shape == x.shape
    vpetl_mm.peft.snf.SNF(flow_length=0)

"""VPT-shallow / VPT-deep: the init, the official formula, every ViT family, the Swin variants
(VPT's prompted Swin block written out), round trip, composition with LoRA."""
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
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             batch, classifier_cfg,
                                                             pretrained_file)
from tests.test_models.test_specs_toolboxes import features, setup  # noqa: E402
from vpetl_mm.engine import trainable_state_dict  # noqa: E402


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def official_vpt(plain, x, prompts, deep):
    """The VPT code's forward: prompts after cls, kept through the blocks (deep: replaced
    before every block after the first), final norm, cls token."""
    tokens, _ = plain.patch_embed(x)
    tokens = torch.cat([plain.cls_token.expand(len(x), -1, -1), tokens], 1) + plain.pos_embed
    tokens = plain.pre_norm(tokens)
    length = prompts.shape[1]
    for i, layer in enumerate(plain.layers):
        p = prompts[i if deep else 0].expand(len(x), -1, -1)
        if i == 0:
            tokens = torch.cat([tokens[:, :1], p, tokens[:, 1:]], 1)
        elif deep:
            tokens = torch.cat([tokens[:, :1], p, tokens[:, 1 + length:]], 1)
        tokens = layer(tokens)
    return plain.ln1(tokens)[:, 0]


@pytest.mark.parametrize('kind', ['VPT-shallow', 'VPT-deep'])
def test_init(kind):
    """The VPT code's init on ViT-B/16: uniform in +-sqrt(6 / (3 * 16 * 16 + 768)), one
    ``(L, 768)`` set (deep: one per block), no prompt dropout by default."""
    bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(type=kind, length=100),
                           backbone=dict(type='VisionTransformer', arch='b', img_size=32,
                                         patch_size=16, init_cfg=None)))
    method = bb.peft.methods[kind.lower()]
    assert method.prompts.shape == ((12 if kind == 'VPT-deep' else 1) * 100, 768)
    assert method.dropout.p == 0
    bound = (6 / (3 * 16 * 16 + 768))**0.5
    t = method.prompts.detach().flatten()
    assert t.abs().max() <= bound and t.abs().max() > 0.99 * bound
    assert abs(t.std().item() * 3**0.5 / bound - 1) < 0.05
    assert abs(t.mean().item()) < 4 * bound / (3 * t.numel())**0.5


@pytest.mark.parametrize('kind', ['VPT-shallow', 'VPT-deep'])
def test_official_formula(tmp_path, kind):
    """The wrapped ViT equals :func:`official_vpt` on the plain one with the method's prompt
    tensors (shallow: inserted once and carried; deep: replaced before every block)."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, dict(type=kind, length=3), path))
    model.eval()
    method = model.backbone.peft.methods[kind.lower()]
    sets = 4 if kind == 'VPT-deep' else 1
    assert method.prompts.shape == (sets * 3, 32)
    bound = (6 / (3 * 8 * 8 + 32))**0.5
    assert method.prompts.abs().max() <= bound
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model.backbone(x)[-1]
        torch.testing.assert_close(out, official_vpt(plain, x, method.prompts.view(sets, 3, 32),
                                                     kind == 'VPT-deep'), rtol=0, atol=1e-5)
        assert (out - plain(x)[-1]).abs().max() > 1e-4  # the prompts are in the path


@pytest.mark.parametrize('kind', ['VPT-shallow', 'VPT-deep'])
def test_train_step_and_round_trip(tmp_path, kind):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(dict(TINY_VIT, out_type='featmap'), dict(type=kind, length=2), path)
    cfg['neck'] = dict(type='GlobalAveragePooling')
    model = MODELS.build(cfg)
    x = torch.randn(2, 3, 32, 32)
    assert model.backbone(x)[-1].shape == (2, 32, 4, 4)  # the grid output keeps its shape
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith('backbone.')} == {
        f'backbone.peft.methods.{kind.lower()}.prompts'}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    for n, p in model.named_parameters():
        assert (n in trainable) or torch.equal(p, before[n]), n
    assert not torch.equal(dict(model.named_parameters())[sorted(trainable)[-1]],
                           before[sorted(trainable)[-1]])
    fresh = MODELS.build(cfg)
    fresh.load_state_dict(trainable_state_dict(model), strict=False)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(x, mode='tensor'), fresh(x, mode='tensor'))


def test_composes_with_lora(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    model = MODELS.build(classifier_cfg(TINY_VIT, [dict(type='VPT-deep', length=2),
                                                   dict(type='LoRA', rank=2, targets=('q', 'v'))],
                                        path))
    methods = model.backbone.peft.methods
    assert list(methods) == ['vpt-deep', 'lora']
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert 'peft.methods.vpt-deep.prompts' in trainable
    assert any('.lora_' in n for n in trainable)
    assert all(n == 'peft.methods.vpt-deep.prompts' or '.lora_' in n for n in trainable)
    grads = set()
    for n, p in model.backbone.named_parameters():
        if p.requires_grad:
            p.register_hook(lambda g, n=n: grads.add(n) if g.abs().sum() > 0 else None)
    model.train()
    model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert 'peft.methods.vpt-deep.prompts' in grads and any('.lora_' in n for n in grads)


def test_swin_deep_prompts_windows(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    model = MODELS.build(classifier_cfg(TINY_SWIN, dict(type='VPT-deep', length=2), path))
    method = model.backbone.peft.methods['vpt-deep']
    assert [tuple(p.shape) for p in method.window_prompts] == [(2, 16)] * 2 + [(2, 32)] * 2
    block = model.backbone.peft.spec.blocks[2]
    msa = block.attn.w_msa
    k = v = torch.randn(4, 2, 16, 16)  # (windows * B, heads, N, d) at width 32
    with torch.no_grad():
        k2, v2 = msa._vpetl_kv[0](k, v)
        qkv = msa.qkv(block.norm1(method.window_prompts[2]))  # the prompts as frozen tokens
        torch.testing.assert_close(k2[0, :, :2], qkv[:, 32:64].reshape(2, 2, 16).transpose(0, 1))
        torch.testing.assert_close(v2[3, :, :2], qkv[:, 64:].reshape(2, 2, 16).transpose(0, 1))
        assert torch.equal(k2[:, :, 2:], k)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    params = dict(model.named_parameters())
    for n, p in params.items():
        assert p.requires_grad or torch.equal(p, before[n]), n
    assert not torch.equal(params['backbone.peft.methods.vpt-deep.window_prompts.0'],
                           before['backbone.peft.methods.vpt-deep.window_prompts.0'])


@pytest.mark.parametrize('family', ['mmaction-vit', 'mmseg-vit'])
@pytest.mark.parametrize('kind', ['VPT-shallow', 'VPT-deep'])
def test_toolbox_vits(family, kind, tmp_path):
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type=kind, length=3))
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        out, ref = features(model.backbone, x), features(plain, x)
    assert out.shape == ref.shape and (out - ref).abs().max() > 1e-4
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, before[n]), n
    name = f'backbone.peft.methods.{kind.lower()}.prompts'
    assert not torch.equal(dict(model.named_parameters())[name], before[name])


def _swin_block_with_prompts(block, x, grid, window, prompts):
    """VPT's Swin block (unshifted) with the prompts joining every window, written out: each
    window's tokens attend over ``[prompts; window]`` (relative-position bias on the token
    pairs only), the prompts' queries too, their outputs averaged over the sample's windows;
    then the residual and the MLP for both. ``x`` ``(B, H * W, C)`` on ``grid``, ``prompts``
    ``(B, L, C)`` -> ``(tokens out, prompts out)``."""
    msa = block.attn.w_msa
    b, _, c = x.shape
    (hh, ww), length, area, heads = grid, prompts.shape[1], window * window, msa.num_heads
    d = c // heads
    windows = x.view(b, hh // window, window, ww // window, window, c).permute(
        0, 1, 3, 2, 4, 5).reshape(b, -1, area, c)  # (B, nW, area, C), row-major windows
    n_win = windows.shape[1]
    seq = torch.cat([prompts[:, None].expand(-1, n_win, -1, -1), windows], 2)
    z = F.layer_norm(seq, (c, ), block.norm1.weight, block.norm1.bias, block.norm1.eps)
    q, k, v = F.linear(z, msa.qkv.weight, msa.qkv.bias).reshape(
        b, n_win, length + area, 3, heads, d).permute(3, 0, 1, 4, 2, 5)  # (B, nW, heads, n, d)
    attn = q @ k.transpose(-2, -1) / d**0.5
    bias = msa.relative_position_bias_table[msa.relative_position_index.view(-1)].view(
        area, area, -1).permute(2, 0, 1)
    attn[..., length:, length:] += bias
    out = (attn.softmax(-1) @ v).transpose(2, 3).reshape(b, n_win, length + area, c)
    out = F.linear(out, msa.proj.weight, msa.proj.bias)
    p_out = out[:, :, :length].mean(1)  # the sample's windows averaged
    t_out = out[:, :, length:].reshape(b, hh // window, ww // window, window, window, c)
    t_out = t_out.permute(0, 1, 3, 2, 4, 5).reshape(b, hh * ww, c)

    def residual_mlp(h):
        z = F.layer_norm(h, (c, ), block.norm2.weight, block.norm2.bias, block.norm2.eps)
        return h + block.ffn.layers(z)

    return residual_mlp(x + t_out), residual_mlp(prompts + p_out)


@pytest.mark.parametrize('window', [8, 4])
def test_swin_shallow_block_equals_vpt_swin_block(tmp_path, window):
    """Window 8 (one window per 8 x 8 grid) and 4 (four windows), no shift: our block output
    and the carried prompts equal VPT's prompted Swin block written out."""
    swin = dict(TINY_SWIN, window_size=window)
    _, path = pretrained_file(tmp_path, swin)
    model = MODELS.build(classifier_cfg(swin, dict(type='VPT-shallow', length=3), path))
    model.eval()
    method = model.backbone.peft.methods['vpt-shallow']
    assert method.prompts.shape == (3, 16)
    block = model.backbone.peft.spec.blocks[0]
    assert block.module.attn.shift_size == 0
    x = torch.randn(2, 64, 16)
    with torch.no_grad():
        method.begin_forward()
        out = block.module(x, (8, 8))
        expected, prompts = _swin_block_with_prompts(block.module, x, (8, 8), window,
                                                     method.prompts.expand(2, -1, -1))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(method._carry, prompts, rtol=1e-5, atol=1e-5)


def test_swin_shallow_windows_and_merging(tmp_path):
    """Several windows: every window sees the prompts (the patch outputs change), each
    sample's prompts average its own windows only (samples stay independent), the prompts pass
    the patch merging as tokens filling their 2 x 2 neighbourhood, and VPT-shallow trains."""
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    cfg = classifier_cfg(TINY_SWIN, dict(type='VPT-shallow', length=2), path)
    model = MODELS.build(cfg)
    model.eval()
    spec = model.backbone.peft.spec
    merging = model.backbone.stages[0].downsample
    p = torch.randn(2, 5, 16)
    with torch.no_grad():
        grid = p[:, :, None].expand(-1, -1, 4, -1).reshape(2 * 5, 4, 16)  # 2 x 2 maps of p
        merged, _ = merging(grid, (2, 2))
        torch.testing.assert_close(spec.merge_tokens(0, p), merged.reshape(2, 5, 32))
        assert torch.equal(spec.merge_tokens(1, p), p)  # the last stage has no merging
        x = torch.randn(3, 3, 32, 32)
        out = model.backbone(x)[-1]
        alone = model.backbone(x[1:2])[-1]
    torch.testing.assert_close(out[1:2], alone, rtol=1e-5, atol=1e-5)
    before, after = train_and_check_frozen(model, batch())
    assert moved(before, after, 'vpt-shallow.prompts')
    assert_round_trip(model, MODELS.build(cfg), torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize('family', ['mmseg-swin', 'mmdet-swin'])
def test_swin_shallow_in_dense_toolboxes(family, tmp_path):
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type='VPT-shallow', length=2))
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        out, ref = features(model.backbone, x), features(plain, x)
    assert out.shape == ref.shape and (out - ref).abs().max() > 1e-4
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    assert torch.isfinite(model.train_step(
        data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))['loss'])
    name = 'backbone.peft.methods.vpt-shallow.prompts'
    assert not torch.equal(dict(model.named_parameters())[name], before[name])


def test_video_swin_refused(tmp_path):
    _, build, _ = setup('mmaction-swin3d', tmp_path)
    for kind in ('VPT-shallow', 'VPT-deep'):
        with pytest.raises(TypeError, match='3-D \\(video\\) windows are not supported'):
            build(dict(type=kind, length=2))


def test_deep_lengths_per_block(tmp_path):
    """NOAH's variable-length deep prompts: one length per block (0: none in that block)."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    lengths = [2, 0, 3, 1]
    model = MODELS.build(classifier_cfg(TINY_VIT, dict(type='VPT-deep', length=lengths), path))
    model.eval()
    prompts = model.backbone.peft.methods['vpt-deep'].prompts
    assert prompts.shape == (6, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, _ = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), tokens], 1) + plain.pos_embed
        start = 0
        for n, layer in zip(lengths, plain.layers):
            p = prompts[start:start + n].expand(2, -1, -1)
            start += n
            tokens = layer(torch.cat([tokens[:, :1], p, tokens[:, 1:]], 1))
            tokens = torch.cat([tokens[:, :1], tokens[:, 1 + n:]], 1)
        torch.testing.assert_close(model.backbone(x)[-1], plain.ln1(tokens)[:, 0], rtol=0,
                                   atol=1e-5)
    with pytest.raises(ValueError, match='one length per block'):
        MODELS.build(classifier_cfg(TINY_VIT, dict(type='VPT-deep', length=[1, 2]), path))
    with pytest.raises(ValueError, match='takes one length'):
        MODELS.build(classifier_cfg(TINY_VIT, dict(type='VPT-shallow', length=[1, 2]), path))

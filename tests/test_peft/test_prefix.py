"""Prefix tuning: attention with prefix keys / values by hand (ViT, 2-D Swin windows, Video Swin
windows), the toolbox families, training, the round trip and the Video Swin-B counts."""
import copy

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

PREFIX = dict(type='PrefixTuning', length=3, bottleneck=8)


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
    model = build_model(PREFIX)
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        out, ref = features(model.backbone, x), features(plain, x)
    assert out.shape == ref.shape and (out - ref).abs().max() > 1e-5
    before, after = train_and_check_frozen(model, data)
    assert moved(before, after, '.prefix.')


# --- Video Swin (mmaction SwinTransformer3D) -----------------------------------------------------
SWIN3D = dict(type='SwinTransformer3D', arch=dict(embed_dims=16, depths=[2, 2, 2, 2],
                                                  num_heads=[1, 2, 2, 4]),
              patch_size=(2, 4, 4), window_size=(2, 2, 2), pretrained=None, pretrained2d=False)
#: 6 frames of 36 x 36: a (3, 9, 9) token grid, padded to (4, 10, 10) in stage 0 and shifted by
#: (1, 1, 1), so the windows hold padding and the shift mask is not all zero
SWIN3D_INPUT = (1, 3, 6, 36, 36)


def video_swin(tmp_path):
    """A plain tiny ``SwinTransformer3D`` with random weights, and ``build(method, head)``: the
    same weights wrapped with ``method`` (in a ``Recognizer3D`` when ``head``)."""
    pytest.importorskip('mmaction')
    init_default_scope('mmaction')
    from mmengine.registry import MODELS as MM
    torch.manual_seed(0)
    plain = MM.build(copy.deepcopy(SWIN3D))
    for p in plain.parameters():
        p.data.normal_(0, 0.05) if p.dim() > 1 else p.data.uniform_(-0.1, 0.1)
    path = tmp_path / 'swin3d.pth'
    torch.save({'state_dict': plain.state_dict()}, path)
    plain.eval()

    def build(method, head=False):
        cfg = dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(SWIN3D),
                   pretrained=str(path), method=copy.deepcopy(method))
        if head:
            cfg = dict(type='Recognizer3D', backbone=cfg,
                       cls_head=dict(type='I3DHead', num_classes=3, in_channels=128),
                       data_preprocessor=dict(type='ActionDataPreprocessor',
                                              format_shape='NCTHW'))
        return MM.build(cfg)

    return plain, build


def swin3d_batch():
    from mmaction.structures import ActionDataSample
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, SWIN3D_INPUT, generator=g, dtype=torch.uint8)
              for _ in range(2)]
    return dict(inputs=inputs, data_samples=[ActionDataSample().set_gt_label(i)
                                             for i in range(2)])


def capture_attention(attn):
    """Record the ``(x, mask)`` every call of ``attn`` gets and the output it returns."""
    calls = []

    def hook(module, args, kwargs, out):
        x = args[0]
        mask = kwargs['mask'] if 'mask' in kwargs else (args[1] if len(args) > 1 else None)
        calls.append((x.detach().clone(), None if mask is None else mask.clone(),
                      out.detach().clone()))

    return calls, attn.register_forward_hook(hook, with_kwargs=True)


def window_attention_reference(attn, x, mask, prefix_kv, qkv_delta=None):
    """Video Swin window attention with ``L`` prefix keys / values, by hand from the module's
    tensors: ``softmax([q P_k^T, q k^T + B + M] * ...) [P_v; v]`` then ``proj``, with ``q``
    already scaled, the relative position bias ``B`` and the shift mask ``M`` on the window
    columns only. ``x`` ``(nW * B, N, C)``, ``mask`` ``(nW, N, N)`` or None; ``prefix_kv`` maps
    ``(k, v)`` to the prefixes first (the test's own :func:`with_prefixes`); ``qkv_delta``
    ``(nW * B, N, 3C)`` is added to the qkv output (a parallel branch such as PATT)."""
    bw, n, c = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.qkv.weight, attn.qkv.bias)
    if qkv_delta is not None:
        qkv = qkv + qkv_delta
    q, k, v = qkv.reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    k, v = prefix_kv(k, v)
    length = k.shape[2] - n
    logits = (q * (c // heads) ** -0.5) @ k.transpose(-1, -2)  # (nW * B, heads, N, L + N)
    index = attn.relative_position_index[:n, :n].reshape(-1)
    bias = attn.relative_position_bias_table[index].reshape(n, n, heads).permute(2, 0, 1)
    window = logits[..., length:] + bias
    if mask is not None:
        nw = mask.shape[0]
        window = (window.reshape(bw // nw, nw, heads, n, n) + mask[None, :, None]).reshape(
            bw, heads, n, n)
    logits = torch.cat([logits[..., :length], window], dim=-1)
    out = (torch.softmax(logits, dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
    return F.linear(out, attn.proj.weight, attn.proj.bias)


def test_video_swin_window_attention_with_prefixes(tmp_path):
    """A shifted, padded block of Video Swin: the prefix keys / values join every window; the
    position bias and the shift mask act on the window columns only; the softmax runs over
    prefix and window keys (hand-written reference on the recorded block input)."""
    _, build = video_swin(tmp_path)
    backbone = build(PREFIX)
    backbone.eval()
    blocks = backbone.peft.spec.blocks
    block = blocks[1]  # stage 0, second block: shifted windows
    assert block.module.shift_size == (1, 1, 1)
    generator = block.attn.prefix
    with torch.no_grad():
        for p in generator.parameters():
            p.normal_(0, 0.5)
    calls, handle = capture_attention(block.attn)
    with torch.no_grad():
        backbone(torch.randn(SWIN3D_INPUT))
    handle.remove()
    (x, mask, out), = calls
    assert x.shape[0] == 2 * 5 * 5 and mask is not None and (mask != 0).any()  # padded grid
    with torch.no_grad():
        expected = window_attention_reference(
            block.attn, x, mask, lambda k, v: with_prefixes(generator, k, v))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert (out - window_attention_reference(block.attn, x, mask, lambda k, v: (k, v))
            ).abs().max() > 1e-3  # the prefixes matter
    unshifted = blocks[0]  # called without a mask
    calls, handle = capture_attention(unshifted.attn)
    with torch.no_grad():
        backbone(torch.randn(SWIN3D_INPUT))
    handle.remove()
    (x, mask, out), = calls
    assert mask is None
    with torch.no_grad():
        expected = window_attention_reference(
            unshifted.attn, x, None, lambda k, v: with_prefixes(unshifted.attn.prefix, k, v))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_video_swin_installed_forward_is_mmaction_exactly(tmp_path):
    """With the spec's window-attention forward installed but no key / value transform (or an
    identity one) the backbone output is bit-identical to the plain mmaction backbone, and the
    installed forward to ``WindowAttention3D.forward`` on the same tensors."""
    plain, build = video_swin(tmp_path)
    backbone = build(PREFIX)
    backbone.eval()
    x = torch.randn(SWIN3D_INPUT)
    attns = [b.attn for b in backbone.peft.spec.blocks]
    assert all(a._vpetl_wrapped and 'forward' in vars(a) for a in attns)
    with torch.no_grad():
        ref = plain(x)
        for transforms in ([], [lambda k, v: (k, v)]):
            for a in attns:
                a._vpetl_kv = list(transforms)
            assert torch.equal(backbone(x), ref)
        calls, handle = capture_attention(attns[1])
        backbone(x)
        handle.remove()
        (tokens, mask, out), = calls
        assert torch.equal(out, type(attns[1]).forward(attns[1], tokens, mask))


def test_video_swin_training_round_trip_and_patt(tmp_path):
    """In a Recognizer3D: only prefixes and head train, frozen weights stay bit-identical, the
    trainable-only state dict restores a fresh model exactly. PATT reaches the keys / values
    through the qkv linear (a hook on it), which the installed forward still calls: composed
    with prefixes both act (reference by hand)."""
    from vpetl_mm.engine import trainable_state_dict
    plain, build = video_swin(tmp_path)
    model = build(PREFIX, head=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith('cls_head.') or '.attn.prefix.' in n for n in trainable), trainable
    before, after = train_and_check_frozen(model, swin3d_batch())
    assert moved(before, after, '.attn.prefix.embedding') and moved(before, after, '.prefix.up')
    fresh = build(PREFIX, head=True)
    fresh.load_state_dict(trainable_state_dict(model), strict=False)
    model.eval()
    fresh.eval()
    x = torch.randn(SWIN3D_INPUT)
    with torch.no_grad():
        assert torch.equal(model.backbone(x), fresh.backbone(x))
        assert (model.backbone(x) - plain(x)).abs().max() > 1e-4

    composed = build([dict(type='PATT', bottleneck=4), PREFIX])
    composed.eval()
    block = composed.peft.spec.blocks[3]  # stage 1, shifted
    branch = block.attn.patt
    with torch.no_grad():
        branch.up.weight.normal_(0, 0.3)
        branch.up.bias.normal_(0, 0.3)
    calls, handle = capture_attention(block.attn)
    with torch.no_grad():
        composed(x)
    handle.remove()
    (tokens, mask, out), = calls
    assert mask is not None
    with torch.no_grad():
        delta = branch.scale * F.linear(torch.tanh(F.linear(tokens, branch.down.weight,
                                                            branch.down.bias)),
                                        branch.up.weight, branch.up.bias)  # (..., 2C): k, v
        delta = torch.cat([torch.zeros_like(delta[..., :block.dims]), delta], dim=-1)
        expected = window_attention_reference(
            block.attn, tokens, mask, lambda k, v: with_prefixes(block.attn.prefix, k, v),
            qkv_delta=delta)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_video_swin_b_counts():
    """Video Swin-B (24 blocks, widths 2 x 128, 2 x 256, 18 x 512, 2 x 1024: 12,032 in all):
    ``12,032 (L + 3 mid + 2) + 24 mid`` prefix parameters. The base config's setting gives
    2,456,064; V-PETL's reported 6.37M is met at its ``att_preseqlen`` 20 with mid 169."""
    pytest.importorskip('mmaction')
    import os.path as osp

    from mmengine.config import Config
    from mmengine.registry import MODELS as MM

    from tests.test_models.checks import build_on_meta
    init_default_scope('mmaction')
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    default = Config.fromfile(osp.join(root, 'configs/_base_/peft/prefix.py')).peft_method
    backbone = dict(type='SwinTransformer3D', arch='base', patch_size=(2, 4, 4),
                    window_size=(8, 7, 7), pretrained=None, pretrained2d=False)
    for method, count in ((default.to_dict(), 2_456_064),
                          (dict(type='PrefixTuning', length=20, bottleneck=169), 6_368_984),
                          (dict(type='PrefixTuning', length=20, bottleneck=512), 18_758_144)):
        model = build_on_meta(MM, dict(type='vpetl_mm.PEFTBackbone', backbone=backbone,
                                       method=method))
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count, method
        length, width = method['length'], method['bottleneck']
        assert count == 12_032 * (length + 3 * width + 2) + 24 * width


def test_smallest_settings_and_kv_dtype_under_autocast(tmp_path):
    """One token and a width-1 reparameterisation are accepted; under bf16 autocast the
    prefixes join the keys and values in the keys' dtype (bf16)."""
    init_default_scope('mmpretrain')
    backbone = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                                 method=dict(type='PrefixTuning', length=1, bottleneck=1)))
    generator = backbone.layers[0].attn.prefix
    assert generator.down.out_features == 1
    seen = []
    backbone.peft.spec.on_attention_kv(
        backbone.peft.spec.blocks[0], lambda k, v: seen.append((k.dtype, k.shape[2])) or (k, v))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        backbone(torch.randn(2, 3, 32, 32))
    assert seen == [(torch.bfloat16, 1 + 16 + 1)]  # cls + 4 x 4 patches + one prefix

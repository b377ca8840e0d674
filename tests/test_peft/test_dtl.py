"""DTL / DTL+ against the formula, and its memory property; DTL+ on the video backbones
(mmaction ViT, Video Swin) with its 2-D fusion convolution on each frame."""
import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmengine.registry import MODELS as ENGINE_MODELS  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.checks import (assert_round_trip, moved,  # noqa: E402
                                      train_and_check_frozen)
from tests.test_peft.test_mona_lorand import (VIDEO, assert_video_formula,  # noqa: E402
                                                base_method, conv2d_frames, on_frames,
                                                video_blocks, video_counts, video_outputs,
                                                video_pair, video_recognizer)
from vpetl_mm.models.specs.base import TokenLayout  # noqa: E402
from vpetl_mm.peft.dtl import DTL, DTLPlus, swish  # noqa: E402

VIT = dict(type='VisionTransformer',
           arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
           img_size=32, patch_size=8, qkv_bias=True, out_type='raw', final_norm=False,
           init_cfg=None)


def build(method):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=VIT, method=method))


def plain_copy(bb):
    """The backbone without the method (its own weights, no hooks)."""
    plain = MODELS.build(VIT)
    plain.load_state_dict(bb.state_dict(), strict=False)
    plain.eval()
    return plain


def reference_forward(bb, x, kernel=0):
    """DTL written out: R accumulates B_j A_j x_j; after add blocks x += fuse(swish(R))."""
    dtl = bb.peft.methods[[k for k in bb.peft.methods][0]]
    bb = plain_copy(bb)
    tokens = torch.cat([bb.cls_token.expand(x.shape[0], -1, -1), bb.patch_embed(x)[0]], 1)
    tokens = tokens + bb.pos_embed
    r = 0
    for i, layer in enumerate(bb.layers):
        side = dtl.side[str(i)]
        r = r + tokens @ side.down.t() @ side.up.t()
        tokens = layer(tokens)
        if i in (2, 3):
            s = swish(r, 100.0)
            if kernel:
                conv = dtl.fusion['0']
                grid = s[:, 1:].transpose(1, 2).reshape(x.shape[0], 32, 4, 4)
                s = torch.cat([s[:, :1], conv(grid).flatten(2).transpose(1, 2)], 1)
            tokens = tokens + s
    return tokens


@pytest.mark.parametrize('kernel', [0, 3])
def test_dtl_matches_formula(kernel):
    method = dict(type='DTL+', kernel_size=kernel) if kernel else dict(type='DTL')
    bb = build(dict(method, rank=2, add_blocks=(2, 3)))
    for p in bb.peft.parameters():
        p.data.normal_(0, 0.3)
    bb.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = bb(x)[-1]
        ref = reference_forward(bb, x, kernel)
        plain = plain_copy(bb)(x)[-1]
    assert (out - plain).abs().max() > 1e-3  # the side network changes the output
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_dtl_counts_vit_b():
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone',
                               backbone=dict(type='VisionTransformer', arch='b', init_cfg=None),
                               method=dict(type='DTL', rank=2, add_blocks=tuple(range(6, 12)))))
    assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 36864


def saved_in_blocks(bb, x, blocks):
    """Bytes autograd saves for backward while the attn/ffn of ``blocks`` run."""
    active = [False]
    saved = [0]

    def pack(t):
        if active[0]:
            saved[0] += t.numel() * t.element_size()
        return t

    def on(*_):
        active[0] = True

    def off(*_):
        active[0] = False

    handles = []
    for i in blocks:
        for sub in (bb.layers[i].attn, bb.layers[i].ffn):
            handles += [sub.register_forward_pre_hook(on), sub.register_forward_hook(off)]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        bb(x)[-1].sum()
    for h in handles:
        h.remove()
    return saved[0]


def test_dtl_keeps_no_activations_before_first_add_block():
    x = torch.randn(2, 3, 32, 32)
    dtl = build(dict(type='DTL', rank=2, add_blocks=(2, 3)))
    lora = build(dict(type='LoRA', rank=2, targets=('q', 'v')))
    dtl.train()
    lora.train()
    assert saved_in_blocks(dtl, x, [0, 1]) == 0
    assert saved_in_blocks(dtl, x, [3]) > 0  # after the first add-back the backbone backprops
    assert saved_in_blocks(lora, x, [0, 1]) > 0


def test_dtl_plus_bad_kernel_and_unsupported_grids():
    """Video grids are served (below); a grid of another rank is refused, naming it."""
    with pytest.raises(ValueError, match='kernel_size >= 1'):
        build(dict(type='DTL+', kernel_size=0))

    class FourDSpec:
        grid_rank = 4

    with pytest.raises(ValueError, match=r'\(T, H, W\) token grid; FourDSpec has 4-D grids'):
        DTLPlus().attach(None, FourDSpec())


# --- video: the fusion convolution on each frame of the (T, H, W) token grid ---------------
@pytest.mark.parametrize('name', list(VIDEO))
def test_dtl_plus_video_formula(tmp_path, name):
    """``R`` accumulates ``B_j A_j x_j`` over the block inputs of a stage (Video Swin: the
    ``(B, D, H, W, C)`` stream, restarting every stage); after the add-back blocks (the second
    half) ``y += DW_k(swish(R))``, the ``k x k`` depthwise convolution on each frame."""
    plain, model, x = video_pair(tmp_path, name, dict(type='DTL+', rank=2, kernel_size=3))
    dtl = model.peft.methods['dtlplus']
    with torch.no_grad():
        for p in dtl.parameters():
            p.normal_(0, 0.3)
        bare = video_outputs(plain, x)
    grid = VIDEO[name][2]
    blocks = video_blocks(plain)
    n = len(blocks)
    # Video Swin (depths 2, 2, 2, 2): add-back after blocks 4..7 (stages 2 and 3), so stages 0
    # and 1 get no side maps and stages 2 and 3 a fusion convolution each
    sides, fusions = ('0123', '0') if name == 'vit' else ('4567', '23')
    assert set(dtl.side) == set(sides) and set(dtl.fusion) == set(fusions)
    state = {}
    plain.register_forward_pre_hook(lambda m, a: state.clear())

    def fuse(r, conv):
        s = r * torch.sigmoid(100 * r)
        return conv2d_frames(s, lambda g: F.conv2d(g, conv.weight, padding=1, groups=g.shape[1]))

    for i, (stage, ref) in enumerate(blocks):
        def forward(t, *rest, b=ref, i=i, stage=stage):
            side = dtl.side[str(i)] if str(i) in dtl.side else None
            if side is not None:
                state[stage] = state.get(stage, 0) + t @ side.down.t() @ side.up.t()
            y = type(b).forward(b, t, *rest)
            if i >= n // 2:
                y = y + on_frames(lambda r: fuse(r, dtl.fusion[str(stage)]), state[stage], grid)
            return y
        ref.forward = forward
    assert_video_formula(model, plain, x, bare)


@pytest.mark.parametrize('name', list(VIDEO))
def test_dtl_plus_video_identity_at_init(tmp_path, name):
    """``B_j = 0``: ``R = 0``, ``swish(0) = 0`` and the fusion of zero is zero, so the wrapped
    backbone's outputs are those of the same backbone wrapped with no trainable branch (the
    linear probe: the same spec-installed forwards), bit for bit, and the bare toolbox
    backbone's up to float rounding (the ViT spec's attention runs in SDPA, mmaction's
    explicitly)."""
    plain, model, x = video_pair(tmp_path, name, dict(type='DTL+', rank=2, kernel_size=3))
    _, probe, _ = video_pair(tmp_path, name, dict(type='LinearProbe'))
    with torch.no_grad():
        for out, ref, bare in zip(video_outputs(model, x), video_outputs(probe, x),
                                  video_outputs(plain, x)):
            assert torch.equal(out, ref)
            torch.testing.assert_close(out, bare, rtol=1e-5, atol=1e-6)


def test_dtl_plus_frames_stay_independent():
    """On a ``(T, H, W)`` grid the fusion of each frame is the image fusion of that frame
    alone: changing frame 1 leaves frames 0 and 2 and the prefix exact."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding='same', groups=8, bias=False)
    t, h, w = 3, 4, 5
    s = torch.randn(2, 1 + t * h * w, 8)
    with torch.no_grad():
        y = DTL._fuse(s, TokenLayout(1, (t, h, w)), conv)
        for f in range(t):
            frame = slice(1 + f * h * w, 1 + (f + 1) * h * w)
            image = DTL._fuse(torch.cat([s[:, :1], s[:, frame]], 1), TokenLayout(1, (h, w)), conv)
            torch.testing.assert_close(y[:, frame], image[:, 1:], rtol=1e-6, atol=1e-6)
        assert torch.equal(y[:, :1], s[:, :1])
        changed = s.clone()
        changed[:, 1 + h * w:1 + 2 * h * w] += torch.randn(2, h * w, 8)
        z = DTL._fuse(changed, TokenLayout(1, (t, h, w)), conv)
    assert torch.equal(z[:, :1 + h * w], y[:, :1 + h * w])
    assert torch.equal(z[:, 1 + 2 * h * w:], y[:, 1 + 2 * h * w:])
    assert (z[:, 1 + h * w:1 + 2 * h * w] - y[:, 1 + h * w:1 + 2 * h * w]).abs().max() > 1e-2


@pytest.mark.parametrize('name', list(VIDEO))
def test_dtl_plus_video_training_and_round_trip(tmp_path, name):
    """One step moves the side maps (and, once ``B`` is non-zero, the fusion) and no frozen
    weight; the trainable-only state dict restores a fresh model exactly."""
    method = dict(type='DTL+', rank=2, kernel_size=3)
    model, cfg, data, x = video_recognizer(tmp_path, name, method)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith('cls_head.') or '.peft.methods.dtlplus.' in n
               for n in trainable), trainable
    before, after = train_and_check_frozen(model, data, steps=2)
    assert moved(before, after, '.side.') and moved(before, after, '.fusion.')
    assert_round_trip(model, ENGINE_MODELS.build(copy.deepcopy(cfg)), x)


def test_dtl_plus_video_counts():
    """The DTL+ base config (r 2, k 3, add-back after blocks 6..11): ViT-B 36,864 + 768 x 9 =
    43,776 as on the image ViT-B/16; Video Swin-B: blocks 6..11 are in stage 2 (width 512),
    whose side maps start at its first block 4: 8 x 2 x 512 x 2 + 512 x 9 = 20,992."""
    assert video_counts(base_method('dtl+.py').to_dict()) == [43776, 20992]

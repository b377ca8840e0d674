"""DTL / DTL+ against the formula, and its memory property."""
import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from vpetl_mm.peft.dtl import swish  # noqa: E402

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


def test_dtl_plus_rejects_3d_grids_and_bad_kernel():
    with pytest.raises(ValueError, match='kernel_size >= 1'):
        build(dict(type='DTL+', kernel_size=0))

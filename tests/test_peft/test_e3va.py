"""E3VA on the dense Swins: the highway formula, no activations inside the frozen blocks,
training (adapters and output norms only), refusal elsewhere, the Swin-B count and init."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmseg')
pytest.importorskip('mmdet')
from mmengine.registry import init_default_scope  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.checks import moved, train_and_check_frozen  # noqa: E402
from tests.test_models.reference import assert_uniform  # noqa: E402
from tests.test_models.test_specs_toolboxes import setup  # noqa: E402

E3VA = dict(type='E3VA', branches=2, kernel=2)


def synthesized(layer):
    """``W = sum_i A_i G_i B_i`` ``(in, out)`` from a synthesised projection's factor tensors."""
    return sum(layer.a[i] @ layer.g[i] @ layer.b[i] for i in range(len(layer.a)))


def highway_adapter(adapter, a):
    """The highway adapter from its tensors: ``P2(GELU(P1(a)))`` with ``P(x) = x W + b``."""
    z = F.gelu(a @ synthesized(adapter.down) + adapter.down.bias)
    return z @ synthesized(adapter.up) + adapter.up.bias


@pytest.mark.parametrize('family', ['mmseg-swin', 'mmdet-swin'])
def test_highway_formula_and_training(family, tmp_path):
    """With the zero-initialised ``up`` factor and bias drawn: ``h_0`` = the patch embedding,
    every block adds ``A_attn(a) + A_mlp(m)`` of its attention-branch and MLP outputs (written
    out from the tensors), a stage's output is ``LN_s(h)`` (the trainable output norm), ``h``
    continues through the frozen patch merging. Then training moves the adapters only."""
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(E3VA)
    data, x = batch_fn()
    bb = model.backbone
    e3va = bb.peft.methods['e3va']
    with torch.no_grad():
        for pair in e3va.adapters:
            for adapter in pair:
                adapter.up.b.normal_(0, 0.3)
                adapter.up.bias.normal_(0, 0.3)
        for name, p in bb.named_parameters():  # the trainable output norms, drawn
            if name.startswith('norm'):
                p.normal_(1.0 if name.endswith('weight') else 0.0, 0.5)
    taps = []
    blocks = [b for s in plain.stages for b in s.blocks]
    for block in blocks:
        block.attn.register_forward_hook(lambda m, a, out: taps.append(out))
        block.ffn.layers.register_forward_hook(lambda m, a, out: taps.append(out))
    bb.eval()
    with torch.no_grad():
        plain(x)
        h, hw = plain.patch_embed(x)
        outs, j = [], 0
        for i, stage in enumerate(plain.stages):
            for _ in stage.blocks:
                pair = e3va.adapters[j]
                h = h + highway_adapter(pair[0], taps[2 * j]) + highway_adapter(
                    pair[1], taps[2 * j + 1])
                j += 1
            if i in plain.out_indices:
                norm = getattr(bb, f'norm{i}')
                y = F.layer_norm(h, (h.shape[-1], ), norm.weight, norm.bias, norm.eps)
                outs.append(y.view(-1, *hw, h.shape[-1]).permute(0, 3, 1, 2))
            if stage.downsample is not None:
                h, hw = stage.downsample(h, hw)
        got = bb(x)
        assert outs and len(got) == len(outs)
        for out, expected, bare in zip(got, outs, plain(x)):
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
            assert (out - bare).abs().max() > 1e-2
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    in_backbone = {n for n in trainable if n.startswith('backbone.')}
    assert all('.e3va.' in n or n.startswith('backbone.norm') for n in in_backbone), in_backbone
    before, after = train_and_check_frozen(model, data)
    assert moved(before, after, '.e3va.adapters.')


def test_backbone_keeps_no_activations(tmp_path):
    _, build, batch_fn = setup('mmseg-swin', tmp_path)
    bb = build(E3VA).backbone
    bb.train()
    state = dict(inside=False, bytes=0)

    def pack(t):
        state['bytes'] += t.numel() * t.element_size() if state['inside'] else 0
        return t

    for stage in bb.stages:
        for block in stage.blocks:
            # the frozen computations themselves (the adapter steps run in hooks around them)
            for sub in (block.norm1, block.attn.w_msa, block.norm2, *block.ffn.layers):
                sub.register_forward_pre_hook(lambda m, a: state.update(inside=True))
                sub.register_forward_hook(lambda m, a, o: state.update(inside=False))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sum(o.sum() for o in bb(torch.randn(1, 3, 32, 32)))
    assert state['bytes'] == 0
    assert torch.is_grad_enabled()


def test_refused_outside_dense_swins(tmp_path):
    _, build, _ = setup('mmseg-vit', tmp_path)
    with pytest.raises(TypeError, match='dense Swin'):
        build(E3VA)


def test_swin_b_count_and_init():
    """Swin-B: the published 1.20M; ``up``'s ``B`` factors and bias exactly zero, every other
    factor kaiming-uniform (a=sqrt 5) per branch, U(+-1/sqrt(size(1))), the ``down`` bias
    U(+-1/sqrt(C)) (the LoRand authors' init)."""
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(type='E3VA'), backbone=dict(
        type='SwinTransformer', embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
        window_size=7, drop_path_rate=0.0, out_indices=(0, 1, 2, 3), init_cfg=None)))
    assert sum(p.numel() for p in bb.peft.parameters()) == 1203456
    assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 1203456 + 3840
    adapters = [a for pair in bb.peft.methods['e3va'].adapters for a in pair]
    assert all(not a.up.b.any() and not a.up.bias.any() for a in adapters)
    scaled = []  # every factor in units of its bound
    for a in adapters:
        assert a.down.a.shape[1:] == (a.up.b.shape[2], 8) and a.down.b.shape[2] == a.up.a.shape[1]
        for factor in (a.down.a, a.down.g, a.down.b, a.up.a, a.up.g):
            scaled.append(factor.detach().flatten() * factor.shape[2]**0.5)
        scaled.append(a.down.bias.detach() * a.down.a.shape[1]**0.5)
    assert_uniform(torch.cat(scaled), 1.0)

"""E3VA on the dense Swins: the highway formula, no activations inside the frozen blocks,
training (adapters and output norms only), refusal elsewhere, the Swin-B count."""
import pytest
import torch

pytest.importorskip('mmseg')
pytest.importorskip('mmdet')
from mmengine.registry import init_default_scope  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.checks import moved, train_and_check_frozen  # noqa: E402
from tests.test_models.test_specs_toolboxes import setup  # noqa: E402

E3VA = dict(type='E3VA', branches=2, kernel=2)


@pytest.mark.parametrize('family', ['mmseg-swin', 'mmdet-swin'])
def test_highway_formula_and_training(family, tmp_path):
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(E3VA)
    data, x = batch_fn()
    bb = model.backbone
    e3va = bb.peft.methods['e3va']
    with torch.no_grad():
        for pair in e3va.adapters:
            for adapter in pair:
                adapter.up.b.normal_(0, 0.3)
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
                h = h + pair[0](taps[2 * j]) + pair[1](taps[2 * j + 1])
                j += 1
            if i in plain.out_indices:
                norm = getattr(bb, f'norm{i}')
                outs.append(norm(h).view(-1, *hw, h.shape[-1]).permute(0, 3, 1, 2))
            if stage.downsample is not None:
                h, hw = stage.downsample(h, hw)
        for got, expected in zip(bb(x), outs):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
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


def test_swin_b_count():
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(type='E3VA'), backbone=dict(
        type='SwinTransformer', embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
        window_size=7, drop_path_rate=0.0, out_indices=(0, 1, 2, 3), init_cfg=None)))
    assert sum(p.numel() for p in bb.peft.parameters()) == 1203456
    assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 1203456 + 3840

"""AdaptFormer against its formula: init, formula (scale, input norm), blocks."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_formula  # noqa: E402
from tests.test_peft.formulas_adapters import (DIMS, assert_uniform, assert_zero,  # noqa: E402
                                               bottleneck, build, gathered, layer_norm, randomize)
from tests.test_peft.formulas_adapters import scope  # noqa: E402,F401 (autouse)


# AdaptFormer: y = h + DropPath(MLP(LN2(h))) + s * up(ReLU(down(LN_a(h)))), h post-attention


def test_adaptformer_init(tmp_path):
    """``down`` kaiming-uniform, ``up`` zero, the input LN at (1, 0); a fixed scale is a
    constant, a learnable one a parameter starting at one."""
    _, model = build(tmp_path, dict(type='AdaptFormer', bottleneck=8, scale=0.1))
    assert_uniform(gathered(model, 'adaptformer.down.weight'), DIMS ** -0.5)
    assert_zero(model, 'adaptformer.down.bias', 'adaptformer.up.weight', 'adaptformer.up.bias',
                'adaptformer.norm.bias')
    assert torch.equal(gathered(model, 'adaptformer.norm.weight'), torch.ones(4 * DIMS))
    assert torch.equal(gathered(model, 'adaptformer.scale'), torch.full((4, ), 0.1))
    assert not any('scale' in n for n, _ in model.named_parameters())
    assert not any('scale' in k for k in model.state_dict())  # a constant of the config
    # the kaiming draws reach their bound: another gain fails here
    assert gathered(model, 'adaptformer.down.weight').abs().max() > 0.95 * DIMS ** -0.5
    _, model = build(tmp_path, dict(type='AdaptFormer', scale='learnable', input_norm=False))
    scales = [p for n, p in model.named_parameters() if n.endswith('adaptformer.scale')]
    assert len(scales) == 4 and all(p.requires_grad and p.item() == 1.0 for p in scales)
    assert not any('.adaptformer.norm' in n for n, _ in model.named_parameters())


@pytest.mark.parametrize('input_norm', [True, False])
@pytest.mark.parametrize('scale', [0.1, 'learnable'])
def test_adaptformer_formula(tmp_path, scale, input_norm):
    plain, model = build(tmp_path, dict(type='AdaptFormer', bottleneck=4, scale=scale,
                                        dropout=0.0, input_norm=input_norm))
    randomize(model)

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            af, seen = ours.adaptformer, {}
            s = af.scale if scale == 'learnable' else scale  # randomized: not one
            ref.ln2.register_forward_pre_hook(lambda m, args, seen=seen: seen.update(h=args[0]))

            def add(m, a, out, af=af, s=s, seen=seen):
                h = seen.pop('h')
                h = layer_norm(h, af.norm) if input_norm else h
                return out + s * bottleneck(h, af.down, af.up, F.relu)
            ref.register_forward_hook(add)
    assert_formula(model, plain, register)


def test_adaptformer_blocks_and_errors(tmp_path):
    """``blocks`` limits where the branch goes; bad settings name the setting."""
    _, model = build(tmp_path, dict(type='AdaptFormer', bottleneck=4, blocks=(0, -1)))
    assert [hasattr(layer, 'adaptformer') for layer in model.layers] == [True, False, False,
                                                                          True]
    with pytest.raises(ValueError, match="AdaptFormer scale='big': a number or 'learnable'"):
        build(tmp_path, dict(type='AdaptFormer', scale='big'))
    with pytest.raises(ValueError, match=r'AdaptFormer blocks=\[4\]: block 4 is out of range'):
        build(tmp_path, dict(type='AdaptFormer', blocks=(4, )))

"""Compacter against its formula: init, formula, shapes, blocks, errors."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_formula  # noqa: E402
from tests.test_peft.formulas_adapters import (DIMS, assert_zero, build, gathered,  # noqa: E402
                                               layer_norm, randomize)
from tests.test_peft.formulas_adapters import scope  # noqa: E402,F401 (autouse)


# Compacter: m <- m + up(GELU(down(LN(m)))) on the MLP output with PHM projections
# x H + b, H = sum_i A_i (x) L_i R_i, the rule A shared by every layer


def phm(x, layer, rule):
    """The PHM linear ``x H + b`` written out with ``torch.kron``."""
    h = sum(torch.kron(rule[i], layer.left[i] @ layer.right[i]) for i in range(len(rule)))
    return x @ h + layer.bias


def test_compacter_init(tmp_path):
    """The shared rule uniform in [-1, 1]; the factors glorot-uniform except the up
    projection's right factors, which are zero; zero biases; the LN at (1, 0)."""
    _, model = build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=2))
    rule = model.peft.methods['compacter'].phm_rule
    assert rule.shape == (2, 2, 2) and rule.abs().max() <= 1 and rule.abs().max() > 0
    for path, fan_in, fan_out in (('down.left', 1, 16), ('down.right', 4, 1), ('up.left', 1, 4)):
        t = gathered(model, f'compacter.{path}')
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert t.abs().max() <= bound and t.abs().max() > bound / 2, path
    assert_zero(model, 'compacter.up.right', 'compacter.down.bias', 'compacter.up.bias',
                'compacter.norm.bias')
    assert torch.equal(gathered(model, 'compacter.norm.weight'), torch.ones(4 * DIMS))


@pytest.mark.parametrize('input_norm', [True, False])
def test_compacter_formula(tmp_path, input_norm):
    plain, model = build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=2, rank=2,
                                        input_norm=input_norm))
    randomize(model)
    rule = model.peft.methods['compacter'].phm_rule

    def adapted(ad):
        def hook(m, a, out):
            h = layer_norm(out, ad.norm) if input_norm else out
            return out + phm(F.gelu(phm(h, ad.down, rule)), ad.up, rule)
        return hook

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.ffn.layers.register_forward_hook(adapted(ours.compacter))
    assert_formula(model, plain, register)


def test_compacter_defaults_shapes_blocks_and_errors(tmp_path):
    """PEViT's defaults (width 64, n=4, rank 1, input LN); with n=2 and rank 3 every factor
    has the shape its role gives it; the shared rule spreads over [-1, 1]; ``blocks`` places
    the adapters there only; bad widths, n, rank and blocks are refused by name."""
    from vpetl_mm.peft.compacter import Compacter, PHMLinear
    defaults = Compacter()
    assert (defaults.bottleneck, defaults.phm_dim, defaults.rank, defaults.input_norm) == (
        64, 4, 1, True)
    assert Compacter(phm_dim=1).phm_dim == 1
    for n, rank in ((0, 1), (4, 0)):
        with pytest.raises(ValueError, match=f'Compacter: phm_dim and rank must be >= 1, got '
                           f'{n}, {rank}'):
            Compacter(phm_dim=n, rank=rank)
    for args, message in (((30, 8, 4), 'in_features=30'), ((32, 6, 4), 'out_features=6')):
        with pytest.raises(ValueError, match=f'Compacter: {message} is not divisible by '
                           'phm_dim=4'):
            PHMLinear(*args)
    _, model = build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=4))
    rule = model.peft.methods['compacter'].phm_rule
    assert rule.abs().max() <= 1 and rule.min() < -0.5 and rule.max() > 0.5
    plain, model = build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=2, rank=3,
                                        blocks=[1, 3]))
    assert [hasattr(layer, 'compacter') for layer in model.layers] == [False, True] * 2
    ad = model.layers[1].compacter
    assert [tuple(t.shape) for t in (ad.down.left, ad.down.right, ad.up.left, ad.up.right)] == [
        (2, DIMS // 2, 3), (2, 3, 4), (2, 4, 3), (2, 3, DIMS // 2)]
    randomize(model)
    rule = model.peft.methods['compacter'].phm_rule

    def register(plain):
        for i in (1, 3):
            ad = model.layers[i].compacter
            plain.layers[i].ffn.layers.register_forward_hook(
                lambda m, a, out, ad=ad: out + phm(F.gelu(phm(layer_norm(out, ad.norm), ad.down,
                                                              rule)), ad.up, rule))
    assert_formula(model, plain, register)
    with pytest.raises(ValueError, match=r'^Compacter blocks=\['):
        build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=2, blocks=[4]))

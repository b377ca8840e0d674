"""Hydra against its formula: init, formula, defaults, targets, blocks, merge."""
import re

import pytest

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_peft.formulas_reparam import (DIMS, HIDDEN, LINEARS, assert_formula,  # noqa: E402
                                              assert_unchanged, assert_uniform, assert_zero, build,
                                              linear, normal_, trainable, xavier_bound)
from tests.test_peft.formulas_reparam import scope  # noqa: E402,F401 (autouse)
from tests.test_peft.test_ssf import merged_equals_unmerged  # noqa: E402


# -- Hydra: out = W x + b + s up(down(x)) + s up'(down'(W x + b)) on proj and fc2 -------------
HYDRA = dict(type='Hydra', rank=2, scale=2.5, dropout=0.0)


HYDRA_SITES = ('proj', 'fc2')


def hydra_modules(model):
    """Every ``(site path, branch name, branch)`` of the model's Hydra."""
    return [(f'layers.{i}.{LINEARS[s]}', b, layer.get_submodule(f'{LINEARS[s]}.hydra.{b}'))
            for i, layer in enumerate(model.layers) for s in HYDRA_SITES for b in ('par', 'seq')]


def test_hydra_init_and_trainable(tmp_path):
    """Down xavier-uniform with a zero bias, up zero (weight and bias), in both branches."""
    plain, model = build(tmp_path, HYDRA)
    branches = hydra_modules(model)
    assert_uniform([(br.down.weight, xavier_bound(br.down.in_features, 2))
                    for _, _, br in branches])
    assert {br.down.in_features for _, b, br in branches if b == 'par'} == {DIMS, HIDDEN}
    assert all(br.down.in_features == DIMS for _, b, br in branches if b == 'seq')
    assert_zero(*(t for _, _, br in branches for t in (br.down.bias, br.up.weight, br.up.bias)))
    assert trainable(model) == {f'{site}.hydra.{b}.{lin}.{w}' for site, b, _ in branches
                                for lin in ('down', 'up') for w in ('weight', 'bias')}
    assert_unchanged(plain, model)


def hydra_hook(hydra):
    """``y + par(x) + seq(y)`` for the linear's input ``x`` and output ``y = W x + b``."""

    def branch(t, br):
        return HYDRA['scale'] * linear(linear(t, br.down), br.up)

    def hook(module, args, out):
        return out + branch(args[0], hydra.par) + branch(out, hydra.seq)
    return hook


def test_hydra_formula(tmp_path):
    plain, model = build(tmp_path, HYDRA)
    hooks = []
    for layer, ref in zip(model.layers, plain.layers):
        for role in HYDRA_SITES:
            hydra = layer.get_submodule(f'{LINEARS[role]}.hydra')
            normal_(hydra.par.down.bias, hydra.par.up.weight, hydra.par.up.bias,
                    hydra.seq.down.bias, hydra.seq.up.weight, hydra.seq.up.bias)
            hooks.append((ref.get_submodule(LINEARS[role]), hydra_hook(hydra)))
    assert_formula(plain, model, hooks)


def test_hydra_defaults_targets_blocks_errors_and_merge(tmp_path):
    """The authors' defaults (rank 2, s=1, no dropout, proj and fc2); any whole linear may be a
    target (here qkv and fc1, in blocks 1 and 3 only); slices and empty targets are refused by
    name; merge folds both branches into their linear exactly."""
    from vpetl_mm.peft.hydra import Hydra
    defaults = Hydra()
    assert (defaults.rank, defaults.scale, defaults.dropout, defaults.targets) == (
        2, 1.0, 0.0, ('proj', 'fc2'))
    plain, model = build(tmp_path, dict(HYDRA, targets=('qkv', 'fc1'), blocks=[1, 3]))
    placed = [[hasattr(layer.get_submodule(LINEARS[r]), 'hydra') for r in LINEARS]
              for layer in model.layers]
    assert placed == [[False] * 4, [True, False, True, False]] * 2
    hooks = []
    for i in (1, 3):
        for role in ('qkv', 'fc1'):
            hydra = model.layers[i].get_submodule(f'{LINEARS[role]}.hydra')
            normal_(hydra.par.down.bias, hydra.par.up.weight, hydra.par.up.bias,
                    hydra.seq.down.bias, hydra.seq.up.weight, hydra.seq.up.bias)
            hooks.append((plain.layers[i].get_submodule(LINEARS[role]), hydra_hook(hydra)))
    assert_formula(plain, model, hooks)
    merged_equals_unmerged(plain, model)
    for targets, bad in ((('q', 'fc2'), ['q']), ((), [])):
        with pytest.raises(ValueError, match=re.escape(
                f'Hydra targets={list(targets)}: choose whole linears among qkv, proj, fc1, fc2 '
                f'(got {bad})')):
            Hydra(targets=targets)
    with pytest.raises(ValueError, match=r'^Hydra blocks=\['):
        build(tmp_path, dict(HYDRA, blocks=[4]))

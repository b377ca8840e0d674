"""RepAdapter against its formula: init, formula, defaults, merge."""
import pytest
import torch

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_peft.formulas_reparam import (DIMS, assert_formula, assert_unchanged,  # noqa: E402
                                              assert_uniform, assert_zero, build, linear, normal_,
                                              per_block, trainable, xavier_bound)
from tests.test_peft.formulas_reparam import scope  # noqa: E402,F401 (autouse)
from tests.test_peft.test_ssf import merged_equals_unmerged  # noqa: E402


# -- RepAdapter: x + s B(A x + a) + s b on the norm1 / norm2 outputs, B group-wise ------------
REPADAPTER = dict(type='RepAdapter', bottleneck=4, groups=2, scale=1.5, dropout=0.0)


REP_NAMES = ('repadapter_attn', 'repadapter_mlp')


def test_repadapter_init_and_trainable(tmp_path):
    """A xavier-uniform with a zero bias; the group-wise B and its bias zero."""
    plain, model = build(tmp_path, REPADAPTER)
    ads = [getattr(layer, n) for layer in model.layers for n in REP_NAMES]
    assert all(ad.up_weight.shape == (2, DIMS // 2, 4 // 2) for ad in ads)
    assert_uniform([(ad.down.weight, xavier_bound(DIMS, 4)) for ad in ads])
    assert_zero(*(t for ad in ads for t in (ad.down.bias, ad.up_weight, ad.up_bias)))
    assert trainable(model) == per_block(*(f'{n}.{p}' for n in REP_NAMES for p in
                                           ('down.weight', 'down.bias', 'up_weight', 'up_bias')))
    assert_unchanged(plain, model)


def repadapter_hook(ad):
    """``x + s (B (A x + a) + b)`` on the norm output ``x``. B is the authors'
    ``Conv1d(d, C, 1, groups=g)``: output group ``k`` (channels ``k C/g ..``) reads the
    bottleneck channels ``k d/g ..`` through ``up_weight[k]`` ``(C/g, d/g)``."""
    g, d = REPADAPTER['groups'], REPADAPTER['bottleneck']

    def hook(module, args, out):
        z = linear(out, ad.down).split(d // g, dim=-1)
        up = torch.cat([z[k] @ ad.up_weight[k].t() for k in range(g)], dim=-1) + ad.up_bias
        return out + REPADAPTER['scale'] * up
    return hook


def test_repadapter_formula(tmp_path):
    plain, model = build(tmp_path, REPADAPTER)
    hooks = []
    for layer, ref in zip(model.layers, plain.layers):
        for name, norm in zip(REP_NAMES, (ref.ln1, ref.ln2)):
            ad = getattr(layer, name)
            normal_(ad.down.bias, ad.up_weight, ad.up_bias)
            hooks.append((norm, repadapter_hook(ad)))
    assert_formula(plain, model, hooks)


def test_repadapter_defaults_blocks_errors_and_merge(tmp_path):
    """The authors' defaults (d=8, g=2, s=1, dropout 0.1); ``blocks`` places both adapters of
    those blocks only; widths not divisible by the groups and blocks out of range are named;
    merge folds the adapters into qkv / fc1 exactly."""
    from vpetl_mm.peft.repadapter import GroupLinearAdapter, RepAdapter
    defaults = RepAdapter()
    assert (defaults.bottleneck, defaults.groups, defaults.scale, defaults.dropout) == (
        8, 2, 1.0, 0.1)
    assert GroupLinearAdapter(DIMS, 8, 2, 1.0, 0.1).dropout.p == 0.1
    plain, model = build(tmp_path, dict(REPADAPTER, blocks=[1, 3]))
    placed = [[hasattr(layer, n) for n in REP_NAMES] for layer in model.layers]
    assert placed == [[False, False], [True, True], [False, False], [True, True]]
    hooks = []
    for i in (1, 3):
        for name, norm in zip(REP_NAMES, (plain.layers[i].ln1, plain.layers[i].ln2)):
            ad = getattr(model.layers[i], name)
            normal_(ad.down.bias, ad.up_weight, ad.up_bias)
            hooks.append((norm, repadapter_hook(ad)))
    assert_formula(plain, model, hooks)
    merged_equals_unmerged(plain, model)
    for bottleneck, dims in ((6, DIMS), (8, 30)):
        with pytest.raises(ValueError, match=f'RepAdapter: bottleneck {bottleneck} and width '
                           f'{dims} must be divisible by groups=4'):
            GroupLinearAdapter(dims, bottleneck, 4, 1.0, 0.0)
    with pytest.raises(ValueError, match=r'^RepAdapter blocks=\['):
        build(tmp_path, dict(REPADAPTER, blocks=[4]))

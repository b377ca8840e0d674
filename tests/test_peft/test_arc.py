"""ARC and ARC_att against their formulas: init, formula, positions, merge."""
import re

import pytest
import torch

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_peft.formulas_reparam import (DEPTH, DIMS, assert_formula,  # noqa: E402
                                              assert_unchanged, assert_uniform, assert_zero, build,
                                              normal_, per_block, trainable, xavier_bound)
from tests.test_peft.formulas_reparam import scope  # noqa: E402,F401 (autouse)
from tests.test_peft.test_ssf import merged_equals_unmerged  # noqa: E402


# -- ARC: h + (h U diag(s)) U^T + b after norm1 / norm2, U shared by all blocks --------------
ARC_RANK = 4


def arc_hooks(plain, model, key, positions):
    """Reference hooks of ARC (after ``ln1`` for ``attn``, ``ln2`` for ``mlp``), with random
    rescales and biases."""
    shared = model.peft.methods[key].shared

    def arc_hook(u, ad):
        def hook(module, args, out):
            return out + ((out @ u) * ad.rescale) @ u.t() + ad.bias
        return hook

    hooks = []
    for layer, ref in zip(model.layers, plain.layers):
        for position in positions:
            ad = getattr(layer, f'arc_{position}')
            normal_(ad.rescale, ad.bias)
            norm = ref.ln1 if position == 'attn' else ref.ln2
            hooks.append((norm, arc_hook(shared[f'{position}_0'], ad)))
    return hooks


def arc_trainable(key, positions):
    """The shared ``U`` of each position and the per-block rescale and bias."""
    return ({f'peft.methods.{key}.shared.{p}_0' for p in positions}
            | per_block(*(f'arc_{p}.{n}' for p in positions for n in ('rescale', 'bias'))))


def test_arc_init_and_trainable(tmp_path):
    """U xavier-uniform; attention rescale zero (identity), MLP rescale xavier-uniform on a
    ``(1, d)`` tensor; biases zero."""
    plain, model = build(tmp_path, dict(type='ARC', rank=ARC_RANK))
    shared = model.peft.methods['arc'].shared
    assert {k: u.shape for k, u in shared.items()} == {
        'attn_0': (DIMS, ARC_RANK), 'mlp_0': (DIMS, ARC_RANK)}
    assert_uniform([(u, xavier_bound(ARC_RANK, DIMS)) for u in shared.values()])
    assert not torch.equal(shared['attn_0'], shared['mlp_0'])
    mlp_rescale = torch.cat([layer.arc_mlp.rescale for layer in model.layers])
    assert mlp_rescale.shape == (DEPTH, ARC_RANK)
    assert mlp_rescale.abs().min() > 0
    assert mlp_rescale.abs().max() <= xavier_bound(ARC_RANK, 1)
    assert_zero(*(t for layer in model.layers
                  for t in (layer.arc_attn.rescale, layer.arc_attn.bias, layer.arc_mlp.bias)))
    assert trainable(model) == arc_trainable('arc', ('attn', 'mlp'))


def test_arc_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='ARC', rank=ARC_RANK, dropout=0.0))
    assert_formula(plain, model, arc_hooks(plain, model, 'arc', ('attn', 'mlp')))


def test_arc_att_formula_init_and_trainable(tmp_path):
    """ARC_att: the attention-side adapter only, starting as the identity."""
    plain, model = build(tmp_path, dict(type='ARC_att', rank=ARC_RANK, dropout=0.0))
    assert trainable(model) == arc_trainable('arc_att', ('attn', ))
    assert_zero(*(t for layer in model.layers for t in (layer.arc_attn.rescale,
                                                        layer.arc_attn.bias)))
    assert_unchanged(plain, model)
    assert_formula(plain, model, arc_hooks(plain, model, 'arc_att', ('attn', )))


def test_arc_defaults_positions_errors_and_merge(tmp_path):
    """The authors' defaults (d=50, dropout 0.1, both positions; ARC_att the attention one, with
    the dropout it is given); ``positions=('mlp',)`` adapts the MLP input only; unknown or no
    positions are refused by name; merge folds the adapters into qkv / fc1 exactly."""
    from vpetl_mm.peft.arc import ARC, ARCAtt
    assert (ARC().rank, ARC().dropout, ARC().positions) == (50, 0.1, ('attn', 'mlp'))
    assert (ARCAtt().rank, ARCAtt().dropout, ARCAtt().positions) == (50, 0.1, ('attn', ))
    _, att = build(tmp_path, dict(type='ARC_att', rank=ARC_RANK, dropout=0.3))
    assert [layer.arc_attn.dropout.p for layer in att.layers] == [0.3] * DEPTH
    plain, model = build(tmp_path, dict(type='ARC', rank=ARC_RANK, dropout=0.0,
                                        positions=('mlp', )))
    assert not any(hasattr(layer, 'arc_attn') for layer in model.layers)
    assert_formula(plain, model, arc_hooks(plain, model, 'arc', ('mlp', )))
    merged_equals_unmerged(plain, model)
    for positions in (('attn', 'ffn'), ()):
        with pytest.raises(ValueError, match=re.escape(
                f"ARC positions={list(positions)}: choose among 'attn', 'mlp'")):
            ARC(positions=positions)

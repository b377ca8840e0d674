"""The baselines that train a subset of the backbone (LinearProbe, FullFineTune, BitFit,
LNTune, PartialK): which weights train; the forward is the plain one."""

import pytest
import torch
from torch import nn

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_peft.formulas_reparam import (DEPTH, DIMS, HIDDEN, assert_unchanged,  # noqa: E402
                                              build, per_block, trainable)
from tests.test_peft.formulas_reparam import scope  # noqa: E402,F401 (autouse)


# -- selection methods: which backbone weights train; the forward is the plain one ------------
def biases(plain):
    """The biases of every linear, convolution and LayerNorm."""
    return {f'{n}.bias' for n, m in plain.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm))}


def layer_norms(plain):
    """Weight and bias of the blocks' ``ln1`` / ``ln2`` and of the final ``ln1``."""
    return per_block(*(f'ln{j}.{p}' for j in (1, 2) for p in ('weight', 'bias'))) | {
        'ln1.weight', 'ln1.bias'}


def last_two_blocks(plain):
    """Every parameter of blocks 2 and 3 (PartialK with k=2), nothing outside the blocks."""
    return {n for n, _ in plain.named_parameters() if n.startswith(('layers.2.', 'layers.3.'))}


SELECTION = {
    'BitFit': (dict(type='BitFit'), biases, 2 * DIMS + DEPTH * (7 * DIMS + HIDDEN)),
    'LNTune': (dict(type='LNTune'), layer_norms, 2 * DIMS * (2 * DEPTH + 1)),
    'PartialK': (dict(type='PartialK', k=2), last_two_blocks,
                 2 * (3 * DIMS * DIMS + DIMS * DIMS + 2 * DIMS * HIDDEN + 9 * DIMS + HIDDEN)),
    'LinearProbe': (dict(type='LinearProbe'), lambda plain: set(), 0),
    'FullFineTune': (dict(type='FullFineTune'),
                     lambda plain: {n for n, _ in plain.named_parameters()}, None),
}


@pytest.mark.parametrize('method', list(SELECTION))
def test_selection_trainable_and_plain_forward(tmp_path, method):
    """Exactly the expected weights train and nothing is added; the forward is the plain
    backbone's, also once the trainable weights have moved (the same offsets in both)."""
    cfg, expected, count = SELECTION[method]
    plain, model = build(tmp_path, cfg)
    names = expected(plain)
    assert trainable(model) == names
    params, plain_params = dict(model.named_parameters()), dict(plain.named_parameters())
    if count is not None:
        assert sum(params[n].numel() for n in names) == count
    assert set(model.state_dict()) == set(plain.state_dict())
    assert_unchanged(plain, model)
    with torch.no_grad():
        for n in names:
            offset = 0.1 * torch.randn_like(params[n])
            params[n].add_(offset)
            plain_params[n].add_(offset)
    assert_unchanged(plain, model)

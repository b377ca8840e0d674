"""PATT against its formula: init and the key / value branch."""
import pytest
import torch

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_formula  # noqa: E402
from tests.test_peft.formulas_adapters import (DIMS, assert_uniform, assert_zero,  # noqa: E402
                                               bottleneck, build, gathered, randomize)
from tests.test_peft.formulas_adapters import scope  # noqa: E402,F401 (autouse)


# PATT: [k, v] += s * up(tanh(down(x))) from the attention input x, beside the frozen qkv


def test_patt_init(tmp_path):
    """``down`` keeps ``nn.Linear``'s init (weight and bias uniform in +-1/sqrt(C)), ``up`` is
    zero."""
    _, model = build(tmp_path, dict(type='PATT', bottleneck=32))
    assert_uniform(gathered(model, 'attn.patt.down.weight'), DIMS ** -0.5)
    assert gathered(model, 'attn.patt.down.bias').abs().max() <= DIMS ** -0.5
    assert_zero(model, 'attn.patt.up.weight', 'attn.patt.up.bias')


@pytest.mark.parametrize('targets', [('k', 'v'), ('q', 'v')])
def test_patt_formula(tmp_path, targets):
    plain, model = build(tmp_path, dict(type='PATT', bottleneck=4, scale=0.3, targets=targets))
    randomize(model)

    def adapted(p):
        def hook(m, args, qkv):
            delta = 0.3 * bottleneck(args[0], p.down, p.up, torch.tanh)
            rows = torch.zeros_like(qkv)
            for i, role in enumerate(targets):  # the branch outputs in q, k, v order
                at = 'qkv'.index(role) * DIMS
                rows[..., at:at + DIMS] = delta[..., i * DIMS:(i + 1) * DIMS]
            return qkv + rows
        return hook

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.attn.qkv.register_forward_hook(adapted(ours.attn.patt))
    assert_formula(model, plain, register)

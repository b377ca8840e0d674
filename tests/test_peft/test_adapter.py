"""Adapter against its formula: init, formula, defaults, blocks, errors."""
import pytest
import torch.nn.functional as F

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_formula  # noqa: E402
from tests.test_peft.formulas_adapters import (DIMS, assert_uniform, assert_zero,  # noqa: E402
                                               bottleneck, build, gathered, randomize)
from tests.test_peft.formulas_adapters import scope  # noqa: E402,F401 (autouse)


# Adapter: m <- m + up(GELU(down(m))) on the MLP output, inside drop-path


def test_adapter_init(tmp_path):
    """``down`` kaiming-uniform with a zero bias, ``up`` exactly zero."""
    _, model = build(tmp_path, dict(type='Adapter', bottleneck=8))
    assert_uniform(gathered(model, 'adapter.down.weight'), DIMS ** -0.5)
    assert_zero(model, 'adapter.down.bias', 'adapter.up.weight', 'adapter.up.bias')


def test_adapter_defaults_blocks_and_errors(tmp_path):
    """The default width is the paper's 8; ``blocks`` places adapters in those blocks only; a
    block out of range names the argument."""
    from vpetl_mm.peft.adapter import Adapter
    assert Adapter().bottleneck == 8
    plain, model = build(tmp_path, dict(type='Adapter', bottleneck=4, blocks=[1, 3]))
    assert [hasattr(layer, 'adapter') for layer in model.layers] == [False, True, False, True]
    randomize(model)

    def register(plain):
        for i in (1, 3):
            ad = model.layers[i].adapter
            plain.layers[i].ffn.layers.register_forward_hook(
                lambda m, a, out, ad=ad: out + bottleneck(out, ad.down, ad.up, F.gelu))
    assert_formula(model, plain, register)
    with pytest.raises(ValueError, match=r'^Adapter blocks=\['):
        build(tmp_path, dict(type='Adapter', blocks=[7]))


def test_adapter_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='Adapter', bottleneck=4))
    randomize(model)

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.ffn.layers.register_forward_hook(
                lambda m, a, out, ad=ours.adapter: out + bottleneck(out, ad.down, ad.up, F.gelu))
    assert_formula(model, plain, register)

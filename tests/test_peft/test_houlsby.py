"""Houlsby against its formula: init, formula, defaults, blocks, errors."""
import pytest
import torch.nn.functional as F

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_formula  # noqa: E402
from tests.test_peft.formulas_adapters import (assert_trunc_normal, assert_zero,  # noqa: E402
                                               bottleneck, build, gathered, randomize)
from tests.test_peft.formulas_adapters import scope  # noqa: E402,F401 (autouse)


# Houlsby: a <- a + up(GELU(down(a))) on the attention projection output, the same on the MLP
# output, both inside their residual branches


def test_houlsby_init(tmp_path):
    """Near identity: every projection truncated normal with std ``init_std`` (1e-2) at two
    stds, zero biases."""
    _, model = build(tmp_path, dict(type='Houlsby', bottleneck=8))
    for adapter in ('adapter_attn', 'adapter_mlp'):
        for proj in ('down', 'up'):
            assert_trunc_normal(gathered(model, f'{adapter}.{proj}.weight'), 1e-2)
            assert_zero(model, f'{adapter}.{proj}.bias')


def test_houlsby_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='Houlsby', bottleneck=4))
    randomize(model)

    def adapted(ad):
        return lambda m, a, out: out + bottleneck(out, ad.down, ad.up, F.gelu)

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.attn.proj.register_forward_hook(adapted(ours.adapter_attn))
            ref.ffn.layers.register_forward_hook(adapted(ours.adapter_mlp))
    assert_formula(model, plain, register)


def test_houlsby_defaults_blocks_and_errors(tmp_path):
    """The paper's defaults (width 8, init std 1e-2); a width of 1 is allowed, 0 refused by
    name; ``blocks`` places both adapters in those blocks only; a block out of range is named."""
    from vpetl_mm.peft.houlsby import HoulsbyAdapter
    assert (HoulsbyAdapter().bottleneck, HoulsbyAdapter().init_std) == (8, 1e-2)
    with pytest.raises(ValueError, match='Houlsby bottleneck must be >= 1, got 0'):
        HoulsbyAdapter(bottleneck=0)
    plain, model = build(tmp_path, dict(type='Houlsby', bottleneck=1, blocks=[1, 3]))
    assert [hasattr(layer, 'adapter_attn') and hasattr(layer, 'adapter_mlp')
            for layer in model.layers] == [False, True, False, True]
    assert not any(hasattr(layer, 'adapter_attn') or hasattr(layer, 'adapter_mlp')
                   for layer in (model.layers[0], model.layers[2]))
    randomize(model)

    def adapted(ad):
        return lambda m, a, out: out + bottleneck(out, ad.down, ad.up, F.gelu)

    def register(plain):
        for i in (1, 3):
            plain.layers[i].attn.proj.register_forward_hook(adapted(model.layers[i].adapter_attn))
            plain.layers[i].ffn.layers.register_forward_hook(adapted(model.layers[i].adapter_mlp))
    assert_formula(model, plain, register)
    with pytest.raises(ValueError, match=r'^Houlsby blocks=\['):
        build(tmp_path, dict(type='Houlsby', blocks=[4]))

"""Adapter+ against its formula: init, formula, defaults, drop path."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_formula  # noqa: E402
from tests.test_peft.formulas_adapters import (DIMS, assert_trunc_normal, assert_zero,  # noqa: E402
                                               bottleneck, build, gathered, randomize)
from tests.test_peft.formulas_adapters import scope  # noqa: E402,F401 (autouse)


# Adapter+: y <- y + s * DropPath(up(GELU(down(y)))) on the block output (post placement)


def test_adapter_plus_init(tmp_path):
    """Both projections truncated normal (std 0.01, +-0.02), zero biases, scaling ones."""
    _, model = build(tmp_path, dict(type='Adapter+', bottleneck=8))
    for path in ('adapter_plus.down.weight', 'adapter_plus.up.weight'):
        assert_trunc_normal(gathered(model, path), 0.01)
    assert_zero(model, 'adapter_plus.down.bias', 'adapter_plus.up.bias')
    assert torch.equal(gathered(model, 'adapter_plus.scaling'), torch.ones(4 * DIMS))


def test_adapter_plus_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='Adapter+', bottleneck=4))
    randomize(model)

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.register_forward_hook(
                lambda m, a, y, ad=ours.adapter_plus:
                y + ad.scaling * bottleneck(y, ad.down, ad.up, F.gelu))
    assert_formula(model, plain, register)


def test_adapter_plus_defaults_blocks_and_drop_path(tmp_path):
    """Paper defaults (r=8, drop-path 0.1); ``blocks`` places adapters there only; in training
    each sample's branch is dropped or scaled by 1 / (1 - p) (drop-path on the branch alone, the
    block output always kept); a block out of range names the argument."""
    from vpetl_mm.peft.adapter_plus import AdapterPlus
    assert (AdapterPlus().bottleneck, AdapterPlus().drop_path) == (8, 0.1)
    plain, model = build(tmp_path, dict(type='Adapter+', bottleneck=4, drop_path=0.5,
                                        blocks=[3]))
    assert [hasattr(layer, 'adapter_plus') for layer in model.layers] == [False] * 3 + [True]
    randomize(model)
    ad = model.layers[3].adapter_plus
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        bare = plain(x)[0]
        handle = plain.layers[3].register_forward_hook(
            lambda m, a, y: y + 2 * ad.scaling * bottleneck(y, ad.down, ad.up, F.gelu))
        kept = plain(x)[0]
        handle.remove()
        model.train()
        torch.manual_seed(0)
        out = model(x)[0]
    dropped = [torch.allclose(o, b, atol=1e-6) for o, b in zip(out, bare)]
    scaled = [torch.allclose(o, k, rtol=1e-5, atol=1e-6) for o, k in zip(out, kept)]
    assert all(d != s for d, s in zip(dropped, scaled)), (dropped, scaled)
    assert 0 < sum(dropped) < len(x)
    with pytest.raises(ValueError, match=r'^Adapter\+ blocks=\['):
        build(tmp_path, dict(type='Adapter+', blocks=[4]))
    with pytest.raises(ValueError, match='drop path probability 1'):
        build(tmp_path, dict(type='Adapter+', drop_path=1))

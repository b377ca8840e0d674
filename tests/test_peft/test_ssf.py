"""SSF against its formula: init, formula, init_std, merge."""
import pytest
import torch
from torch import nn

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_peft.formulas_reparam import (DIMS, LINEARS, assert_formula,  # noqa: E402
                                              assert_normal, build, normal_, per_block, trainable)
from tests.test_peft.formulas_reparam import scope  # noqa: E402,F401 (autouse)


# -- SSF: x * gamma + beta after the patch embedding, every norm and every linear -------------
SSF_SITES = (('patch_embed.projection', 'ln1')
             + tuple(sorted(per_block('ln1', 'ln2', *LINEARS.values()))))


def test_ssf_init_and_trainable(tmp_path):
    """``gamma ~ N(1, 0.02)``, ``beta ~ N(0, 0.02)`` at every site, and no other trainable."""
    plain, model = build(tmp_path, dict(type='SSF'))
    ssfs = [model.get_submodule(f'{site}.ssf') for site in SSF_SITES]
    assert_normal(torch.cat([m.scale for m in ssfs]), 1.0, 0.02)
    assert_normal(torch.cat([m.shift for m in ssfs]), 0.0, 0.02)
    assert trainable(model) == {f'{site}.ssf.{p}' for site in SSF_SITES
                                for p in ('scale', 'shift')}


def ssf_hook(ssf):
    """``out * gamma + beta`` over the channels (dim 1 of a convolution's output, else last)."""

    def hook(module, args, out):
        shape = (1, -1, 1, 1) if isinstance(module, nn.Conv2d) else (-1, )
        return out * ssf.scale.view(shape) + ssf.shift.view(shape)
    return hook


def test_ssf_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='SSF'))
    hooks = []
    for site in SSF_SITES:
        ssf = model.get_submodule(f'{site}.ssf')
        normal_(ssf.scale, mean=1.0, std=0.3)
        normal_(ssf.shift, std=0.3)
        hooks.append((plain.get_submodule(site), ssf_hook(ssf)))
    assert_formula(plain, model, hooks)


def merged_equals_unmerged(plain, model):
    """``merge_and_unload`` leaves a plain backbone (the plain one's parameter names, no hooks
    left) computing what the method computed, in float64."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)).double()
    model.double()
    with torch.no_grad():
        before = model(x)[-1]
        vpetl_mm.merge_and_unload(model)
        after = model(x)[-1]
    assert set(model.state_dict()) == set(plain.state_dict())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.layers.modules())
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-10)


def test_ssf_init_std_merge_and_one_wrap_per_module(tmp_path):
    """``init_std`` sets both draws' std; merge folds every scale-shift into its layer; a module
    reached twice is wrapped once."""
    plain, model = build(tmp_path, dict(type='SSF', init_std=0.1))
    ssfs = [model.get_submodule(f'{site}.ssf') for site in SSF_SITES]
    assert_normal(torch.cat([m.scale for m in ssfs]), 1.0, 0.1)
    assert_normal(torch.cat([m.shift for m in ssfs]), 0.0, 0.1)
    method = model.peft.methods['ssf']
    norm = model.layers[0].ln1
    hooks, wrapped = len(norm._forward_hooks), len(method._wrapped)
    method._wrap_module(model.peft.spec, norm, DIMS, dim=-1)
    assert (len(norm._forward_hooks), len(method._wrapped)) == (hooks, wrapped)
    merged_equals_unmerged(plain, model)

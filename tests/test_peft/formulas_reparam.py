"""Helpers of the formula tests of the reparameterisable methods (``test_lora.py``,
``test_hydra.py``, ...): each method is built on the tiny mmpretrain ViT through
``PEFTBackbone``, its zero-initialised factors get random values, and its output (every
token after the final norm, eval mode, float64) is compared with a plain copy whose forward
hooks compute the method's formula from the method's parameter tensors, never through its
modules or helpers.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models import reference  # noqa: E402
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_VIT,  # noqa: E402
                                                             pretrained_file)

VIT = dict(TINY_VIT, out_type='raw')  # every token of the last block, after the final norm
DIMS, HIDDEN, DEPTH = 32, 64, 4
CHUNKS = HIDDEN // DIMS  # FacT's C x C chunks of the MLP weights
# the linears of a block, by role, as paths inside an mmpretrain ``TransformerEncoderLayer``
LINEARS = dict(qkv='attn.qkv', proj='attn.proj', fc1='ffn.layers.0.0', fc2='ffn.layers.1')


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def build(tmp_path, method):
    """``(plain, model)``: the tiny ViT with the same pretrained weights, bare and with
    ``method``, both in eval mode."""
    plain, path = pretrained_file(tmp_path, VIT)
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(VIT),
                              pretrained=path, method=method))
    plain.eval()
    model.eval()
    return plain, model


def trainable(model):
    """Names of the parameters that require a gradient."""
    return {n for n, p in model.named_parameters() if p.requires_grad}


def per_block(*paths):
    """``layers.<i>.<path>`` for every block and path."""
    return {f'layers.{i}.{p}' for i in range(DEPTH) for p in paths}


def normal_(*tensors, mean=0.0, std=0.2):
    """Overwrite ``tensors`` with N(mean, std^2) draws (a trained, non-trivial state)."""
    with torch.no_grad():
        for t in tensors:
            t.normal_(mean, std)


def assert_formula(plain, model, hooks):
    """The hooks ``(module of plain, hook)`` hold the formula: :func:`reference.assert_formula`
    in float64."""
    reference.assert_formula(
        model, plain, lambda _: [m.register_forward_hook(h) for m, h in hooks], double=True)


def assert_unchanged(plain, model):
    """The method's output equals the bare backbone's, bit for bit."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(x)[-1], plain(x)[-1])


def assert_uniform(pairs):
    """Each tensor of ``(tensor, bound)`` looks drawn from U(-bound, bound): inside its bound,
    with the std ``bound / sqrt(3)`` over all of them (pooled in units of their bounds)."""
    t = torch.cat([x.detach().flatten() / bound for x, bound in pairs])
    assert t.abs().max() <= 1
    assert abs(t.std().item() * math.sqrt(3) - 1) < 0.15


def assert_normal(t, mean, std):
    """``t`` looks drawn from N(mean, std^2)."""
    t = t.detach().flatten()
    assert abs(t.mean().item() - mean) < 4 * std / math.sqrt(t.numel())
    assert abs(t.std().item() / std - 1) < 0.15


def assert_zero(*tensors):
    """Every entry of every tensor is exactly zero."""
    for t in tensors:
        assert not t.any()


def kaiming_bound(fan_in):
    """Bound of ``kaiming_uniform_(a=sqrt(5))`` (``nn.Linear``'s default): 1 / sqrt(fan_in)."""
    gain = math.sqrt(2 / (1 + 5))
    return gain * math.sqrt(3 / fan_in)


def xavier_bound(fan_in, fan_out):
    """Bound of ``xavier_uniform_``: sqrt(6 / (fan_in + fan_out))."""
    return math.sqrt(6 / (fan_in + fan_out))


def linear(x, layer):
    """``x W^T + b`` with the weight and bias tensors of the ``nn.Linear`` ``layer``."""
    return F.linear(x, layer.weight, layer.bias)


def add_rows(out, deltas):
    """``out`` plus ``deltas`` ``{row offset: delta}`` added to those rows only."""
    full = torch.zeros_like(out)
    for start, delta in deltas.items():
        full[..., start:start + delta.shape[-1]] = delta
    return out + full

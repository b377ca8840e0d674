"""Helpers of the formula tests of the adapter family (``test_adapter.py``,
``test_adaptformer.py``, ...): the method on the tiny ViT against hooks on a plain copy
that compute the published formula from the method's tensors.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_VIT,  # noqa: E402
                                                             pretrained_file)

VIT = dict(TINY_VIT, out_type='raw')  # every token of the last block, after the final norm
DIMS = 32
LN_EPS = 1e-5  # nn.LayerNorm's default, the authors' adapter norms


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


class FixedDropPath(nn.Module):
    """Stands in for drop-path: a fixed factor on the residual branch it wraps."""

    def forward(self, x):
        return 0.5 * x


def build(tmp_path, method):
    """``(plain, model)``: the tiny ViT with the same pretrained weights, bare and with
    ``method``, both in eval mode with :class:`FixedDropPath` on their attention and MLP
    branches."""
    plain, path = pretrained_file(tmp_path, VIT)
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(VIT),
                              pretrained=path, method=method))
    assert len(plain.layers) == len(model.layers) == 4  # the hooks pair the blocks by zip
    for backbone in (plain, model):
        backbone.eval()
        for layer in backbone.layers:
            layer.attn.out_drop = FixedDropPath()
            layer.ffn.dropout_layer = FixedDropPath()
    return plain, model


def randomize(model, std=0.2):
    """Draw every trainable parameter of ``model`` (the method's) from N(0, std^2)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, std)


def gathered(model, path):
    """The tensors at attribute ``path`` of every block, flattened into one."""
    tensors = []
    for layer in model.layers:
        t = layer
        for name in path.split('.'):
            t = getattr(t, name)
        tensors.append(torch.as_tensor(t).detach().flatten())
    return torch.cat(tensors)


def assert_uniform(t, bound):
    """``t`` looks drawn from U(-bound, bound): inside the bound, reaching it (from 200 draws
    on, a draw above 0.95 of it fails with probability 0.95^200 < 1e-4: another gain fails
    here), with that std."""
    assert t.abs().max() <= bound
    if t.numel() >= 200:
        assert t.abs().max() > 0.95 * bound
    assert abs(t.std().item() / (bound / 3 ** 0.5) - 1) < 0.15


def assert_trunc_normal(t, std):
    """``t`` looks drawn from N(0, std^2) truncated at +-2 std (whose std is 0.88 std)."""
    assert t.abs().max() <= 2 * std
    assert abs(t.std().item() / std - 0.88) < 0.08


def assert_zero(model, *paths):
    """The tensors at ``paths`` are exactly zero in every block."""
    for path in paths:
        assert not gathered(model, path).any(), path


def linear(x, layer):
    """``x W^T + b`` with the weight and bias tensors of ``layer``."""
    return F.linear(x, layer.weight, layer.bias)


def bottleneck(x, down, up, act):
    """``up(act(down(x)))`` from the tensors of the ``down`` and ``up`` linears."""
    return linear(act(linear(x, down)), up)


def layer_norm(x, norm):
    """``LN(x)`` with the affine tensors of ``norm``."""
    return F.layer_norm(x, (x.shape[-1], ), norm.weight, norm.bias, eps=LN_EPS)


# Adapter: m <- m + up(GELU(down(m))) on the MLP output, inside drop-path

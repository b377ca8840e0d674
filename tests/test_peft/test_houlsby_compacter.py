"""Houlsby adapter and Compacter against their formulas on the mmpretrain ViT."""
import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

from vpetl_mm.peft.compacter import PHMLinear, kron_sum  # noqa: E402

from tests.test_models.test_peft_backbone_mmpretrain import TINY_VIT, pretrained_file  # noqa: E402


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def build(tmp_path, method):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                              pretrained=path, method=method))
    plain.eval()
    model.eval()
    return plain, model


def houlsby_by_hand(ad, h):
    """``up(GELU(down(h)))`` from the adapter's weight and bias tensors."""
    return F.linear(F.gelu(F.linear(h, ad.down.weight, ad.down.bias)), ad.up.weight, ad.up.bias)


def phm_by_hand(x, layer, rule):
    """``x H + b`` with ``H = sum_i A_i (x) L_i R_i`` written out with ``torch.kron``."""
    h = sum(torch.kron(rule[i], layer.left[i] @ layer.right[i]) for i in range(len(rule)))
    return x @ h + layer.bias


def test_houlsby_formula(tmp_path):
    """Adapters on the attention projection output and on the MLP output, each with a skip."""
    plain, model = build(tmp_path, dict(type='Houlsby', bottleneck=4, init_std=0.2))
    for layer, ref in zip(model.layers, plain.layers):  # the adapters' tensors, by hand
        ref.attn.proj.register_forward_hook(
            lambda m, a, out, ad=layer.adapter_attn: out + houlsby_by_hand(ad, out))
        ref.ffn.layers.register_forward_hook(
            lambda m, a, out, ad=layer.adapter_mlp: out + houlsby_by_hand(ad, out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out, ref = model(x)[-1], plain(x)[-1]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_houlsby_bad_bottleneck():
    with pytest.raises(ValueError, match='bottleneck'):
        MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                          method=dict(type='Houlsby', bottleneck=0)))


def test_kron_sum_is_sum_of_kronecker_products():
    torch.manual_seed(0)
    rule, left, right = torch.randn(3, 3, 3), torch.randn(3, 4, 2), torch.randn(3, 2, 5)
    expected = sum(torch.kron(rule[i], left[i] @ right[i]) for i in range(3))
    torch.testing.assert_close(kron_sum(rule, left, right), expected)


def test_phm_linear_shapes_and_zero_init():
    layer = PHMLinear(8, 12, n=4, rank=1, zero_init=True)
    rule = torch.rand(4, 4, 4)
    x = torch.randn(2, 5, 8)
    assert layer(x, rule).shape == (2, 5, 12)
    assert torch.equal(layer(x, rule), torch.zeros(2, 5, 12))
    with pytest.raises(ValueError, match='in_features=6 is not divisible by phm_dim=4'):
        PHMLinear(6, 12, n=4)


def test_compacter_formula_and_shared_rule(tmp_path):
    """m <- m + up(GELU(down(LN(m)))) on the MLP output, one rule shared by every PHM layer."""
    plain, model = build(tmp_path, dict(type='Compacter', bottleneck=4, phm_dim=2))
    rule = model.peft.methods['compacter'].phm_rule
    assert rule.shape == (2, 2, 2) and rule.requires_grad
    with torch.no_grad():
        for layer in model.layers:
            torch.nn.init.normal_(layer.compacter.up.right)
    for layer, ref in zip(model.layers, plain.layers):
        ad = layer.compacter

        def hook(m, a, out, ad=ad):
            h = F.layer_norm(out, (out.shape[-1], ), ad.norm.weight, ad.norm.bias, eps=1e-5)
            return out + phm_by_hand(F.gelu(phm_by_hand(h, ad.down, rule)), ad.up, rule)
        ref.ffn.layers.register_forward_hook(hook)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out, ref = model(x)[-1], plain(x)[-1]
        assert (out - model(x)[-1]).abs().max() == 0
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    model.train()
    model(x)[-1].sum().backward()
    assert rule.grad is not None and rule.grad.abs().sum() > 0

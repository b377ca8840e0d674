"""``torch.compile`` of a PEFT backbone: the same outputs and gradients as eager, and no graph
breaks in vpetl_mm's code for a representative set of methods (a linear-site update, hooks on
the blocks, inserted tokens, keys and values, a side network, a shared factorisation, a
scale-shift). DyT breaks the graph where it gathers the tokens its dispatcher keeps (the
number of kept tokens depends on the data)."""
import copy

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import TINY_VIT  # noqa: E402

METHODS = {
    'LoRA': dict(type='LoRA', rank=2, alpha=4),
    'Adapter': dict(type='Adapter', bottleneck=4),
    'VPT-deep': dict(type='VPT-deep', length=2),
    'PrefixTuning': dict(type='PrefixTuning', length=2, bottleneck=4),
    'DTL': dict(type='DTL', rank=2, add_blocks=(2, 3)),
    'FacT-TT': dict(type='FacT-TT', rank=2, dropout=0.0),
    'SSF': dict(type='SSF'),
}


def build(method):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                              method=method))
    with torch.no_grad():  # a trained state: zero-initialised factors would hide a branch
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    return model


@pytest.mark.parametrize('name', list(METHODS))
def test_compiled_equals_eager_without_graph_breaks(name):
    torch._dynamo.reset()
    model = build(METHODS[name])
    x = torch.randn(2, 3, 32, 32)
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, [str(b.reason)[:200]
                                              for b in explained.break_reasons]
    compiled = torch.compile(model, backend='aot_eager')
    grads = []
    for forward in (model, compiled):
        model.zero_grad(set_to_none=True)
        out = forward(x)[-1]
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        grads[-1]['out'] = out.detach()
    eager, comp = grads
    assert eager.keys() == comp.keys() and len(eager) > 1
    for key in eager:
        torch.testing.assert_close(comp[key], eager[key], rtol=1e-5, atol=1e-6)


def test_dyt_compiles_to_the_eager_output():
    torch._dynamo.reset()
    model = build(dict(type='DyT', bottleneck=4))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, backend='aot_eager')(x)[-1],
                                   model(x)[-1], rtol=1e-5, atol=1e-6)

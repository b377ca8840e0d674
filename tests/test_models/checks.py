"""Checks shared by the method tests: training moves only trainable weights, and the
trainable-only state dict restores a freshly built model exactly; shape-only builds."""
from unittest import mock

import torch
from mmengine.optim import OptimWrapper

from vpetl_mm.engine import trainable_state_dict


def train_and_check_frozen(model, data, steps=1, optim=None):
    """Run ``steps`` train steps on ``data``; assert finite losses and bit-identical frozen
    weights. Returns ``(params before, params after)`` (name -> tensor)."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim = optim or OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    model.train()
    for _ in range(steps):
        log_vars = model.train_step(data, optim)
        assert torch.isfinite(log_vars['loss'])
    after = dict(model.named_parameters())
    for n, p in after.items():
        assert p.requires_grad or torch.equal(p, before[n]), f'frozen {n} changed'
    return before, after


def moved(before, after, tag):
    """Whether some parameter whose name contains ``tag`` changed."""
    return any(tag in n and not torch.equal(after[n], before[n]) for n in after)


def assert_round_trip(model, fresh, x):
    """Load ``model``'s trainable-only state dict into ``fresh``: identical eval outputs."""
    fresh.load_state_dict(trainable_state_dict(model), strict=False)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(x, mode='tensor'), fresh(x, mode='tensor'))


def build_on_meta(registry, cfg):
    """Build ``cfg`` on the meta device (shapes only: parameter counts of full-size models).
    Swin backbones read their drop-path schedules with ``torch.linspace(...).item()``, so
    ``linspace`` stays on the CPU."""
    linspace = torch.linspace
    with torch.device('meta'), mock.patch(
            'torch.linspace', lambda *a, **k: linspace(*a, **dict(k, device='cpu'))):
        return registry.build(cfg)

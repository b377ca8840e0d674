"""Shared PEFT layers: one-pass drop-path and the low-rank map's scale."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vpetl_mm.peft.layers import DropPath, LowRankLinear


class OpLog(TorchDispatchMode):
    """Names of the operators run inside the context."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_drop_path_drops_whole_samples_and_rescales_the_kept():
    torch.manual_seed(0)
    drop = DropPath(0.3)
    x = torch.rand(4000, 3, 5) + 1
    y = drop(x)
    kept = (y != 0).flatten(1)
    assert (kept.all(1) | ~kept.any(1)).all()  # a sample is kept or dropped as a whole
    rows = kept.all(1)
    torch.testing.assert_close(y[rows], x[rows] / 0.7)
    assert abs((~rows).float().mean().item() - 0.3) < 0.03


def test_drop_path_is_the_identity_in_eval_and_at_zero():
    x = torch.randn(8, 4)
    assert DropPath(0.5).eval()(x) is x
    assert DropPath(0.0)(x) is x


def test_drop_path_makes_one_pass_over_the_branch():
    """The scale rides on the ``(B, 1, ...)`` mask: one multiply touches the branch."""
    x = torch.randn(8, 16, 32)
    with OpLog() as log:
        DropPath(0.2)(x)
    assert log.ops.count('mul.Tensor') == 1 and 'div.Tensor' not in log.ops, log.ops


@pytest.mark.parametrize('p', [-0.1, 1.0, 1.5])
def test_drop_path_refuses_probabilities_outside_zero_one(p):
    with pytest.raises(ValueError, match=f'drop path probability {p}: must be in'):
        DropPath(p)


def test_low_rank_linear_skips_the_multiply_at_scale_one():
    layer = LowRankLinear(6, 4, 2, scale=1.0)
    assert layer.scaled_up() is layer.up
    scaled = LowRankLinear(6, 4, 2, scale=0.25)
    torch.testing.assert_close(scaled.scaled_up(), 0.25 * scaled.up)
    torch.nn.init.normal_(scaled.up)
    x = torch.randn(3, 6)
    torch.testing.assert_close(scaled(x), 0.25 * (x @ scaled.down.t() @ scaled.up.t()))
    torch.testing.assert_close(scaled.delta_weight(), 0.25 * scaled.up @ scaled.down)

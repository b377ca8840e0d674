"""LinearSite: low-rank terms and row deltas land on the right rows, without padded copies."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from vpetl_mm.models.specs.base import LinearSite, LowRankTerm, qkv_sites

C, R, TOKENS = 12, 3, (2, 5)


def qkv_linear():
    torch.manual_seed(0)
    linear = nn.Linear(C, 3 * C)
    return linear, qkv_sites(LinearSite(linear), C)


def factors(out=C, rank=R):
    return torch.randn(rank, C), torch.randn(out, rank)


class AllocationLog(TorchDispatchMode):
    """Records the shape of every tensor an operator creates (views excluded)."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and not func._schema.is_mutable and not any(
                a.alias_info for a in func._schema.returns if a.alias_info is not None):
            self.shapes.append((func.__name__, tuple(out.shape)))
        return out


def test_low_rank_terms_on_q_and_v_equal_their_formula():
    linear, sites = qkv_linear()
    (dq, uq), (dv, uv) = factors(), factors()
    sites['q'].add_low_rank(LowRankTerm(lambda: (dq, uq)))
    sites['v'].add_low_rank(LowRankTerm(lambda: (dv, uv)))
    x = torch.randn(*TOKENS, C)
    expected = F.linear(x, linear.weight, linear.bias)
    expected[..., :C] += x @ dq.t() @ uq.t()
    expected[..., 2 * C:] += x @ dv.t() @ uv.t()
    torch.testing.assert_close(linear(x), expected)
    assert (linear(x)[..., C:2 * C] == F.linear(x, linear.weight, linear.bias)[..., C:2 * C]).all()


def test_low_rank_terms_make_no_full_width_copies():
    """The q and v terms of a fused qkv read ``x`` once (one product with the stacked downs)
    and add into the output in the same operator that adds the stacked ups: besides the
    linear's own output exactly one ``(..., 3C)`` tensor is created, by ``addmm``."""
    linear, sites = qkv_linear()
    for role in ('q', 'v'):
        pair = factors()
        sites[role].add_low_rank(LowRankTerm(lambda p=pair: p))
    x = torch.randn(*TOKENS, C)
    with AllocationLog() as log:
        linear(x)
    full = [name for name, shape in log.shapes if shape[-1] == 3 * C and len(shape) > 1
            and shape[0] != 3 * C]
    assert full == ['addmm.default', 'addmm.default'], log.shapes  # the linear, the terms
    products = [shape for name, shape in log.shapes if name.startswith(('mm', 'bmm'))]
    assert products == [(TOKENS[0] * TOKENS[1], 2 * R)], log.shapes  # x @ [down_q; down_v]^T


def test_each_term_gets_its_own_input_dropout_mask():
    """With input dropout in training, every term sees ``x`` through its own mask (the masks
    of LoRA on q and on v are independent draws)."""
    linear, sites = qkv_linear()
    drops = [nn.Dropout(0.5), nn.Dropout(0.5)]
    (dq, uq), (dv, uv) = factors(), factors()
    sites['q'].add_low_rank(LowRankTerm(lambda: (dq, uq), input_dropout=drops[0]))
    sites['v'].add_low_rank(LowRankTerm(lambda: (dv, uv), input_dropout=drops[1]))
    x = torch.randn(*TOKENS, C)
    torch.manual_seed(7)
    out = linear(x)
    torch.manual_seed(7)
    mq, mv = F.dropout(x, 0.5), F.dropout(x, 0.5)
    assert not torch.equal(mq, mv)
    expected = F.linear(x, linear.weight, linear.bias)
    expected[..., :C] += mq @ dq.t() @ uq.t()
    expected[..., 2 * C:] += mv @ dv.t() @ uv.t()
    torch.testing.assert_close(out, expected)
    for d in drops:
        d.eval()
    plain = F.linear(x, linear.weight, linear.bias)
    torch.testing.assert_close(linear(x)[..., :C], plain[..., :C] + x @ dq.t() @ uq.t())


def test_rank_dropout_acts_on_each_terms_hidden_features():
    linear, sites = qkv_linear()
    (dq, uq), (dk, uk) = factors(), factors()
    sites['q'].add_low_rank(LowRankTerm(lambda: (dq, uq), rank_dropout=nn.Dropout(0.5)))
    sites['k'].add_low_rank(LowRankTerm(lambda: (dk, uk)))
    x = torch.randn(*TOKENS, C)
    torch.manual_seed(3)
    out = linear(x)
    torch.manual_seed(3)
    hq = F.dropout(x @ dq.t(), 0.5)
    expected = F.linear(x, linear.weight, linear.bias)
    expected[..., :C] += hq @ uq.t()
    expected[..., C:2 * C] += x @ dk.t() @ uk.t()
    torch.testing.assert_close(out, expected)


def test_row_deltas_terms_and_transforms_compose_in_order():
    """Low-rank terms and row deltas are added first, then the output transforms see the sum;
    removing everything takes the hook away."""
    linear, sites = qkv_linear()
    down, up = factors()
    term = sites['v'].add_low_rank(LowRankTerm(lambda: (down, up)))
    delta = (lambda x: 2 * x)
    sites['k'].add_delta(delta)
    transform = (lambda x, y: 3 * y)
    sites['qkv'].add_output_transform(transform)
    x = torch.randn(*TOKENS, C)
    expected = F.linear(x, linear.weight, linear.bias)
    expected[..., C:2 * C] += 2 * x
    expected[..., 2 * C:] += x @ down.t() @ up.t()
    torch.testing.assert_close(linear(x), 3 * expected)
    for fn in (term, delta, transform):
        sites['qkv'].remove_delta(fn)
    assert not sites['qkv'].active and not linear._forward_hooks
    torch.testing.assert_close(linear(x), F.linear(x, linear.weight, linear.bias))


def test_low_rank_terms_get_gradients_through_the_fused_product():
    linear, sites = qkv_linear()
    down = torch.randn(R, C, requires_grad=True)
    up = torch.randn(C, R, requires_grad=True)
    sites['q'].add_low_rank(LowRankTerm(lambda: (down, 0.5 * up)))
    x = torch.randn(*TOKENS, C)
    weights = torch.randn(*TOKENS, 3 * C)
    (linear(x) * weights).sum().backward()
    ref_down, ref_up = down.detach().requires_grad_(), up.detach().requires_grad_()
    ((x @ ref_down.t() @ (0.5 * ref_up).t()) * weights[..., :C]).sum().backward()
    torch.testing.assert_close(down.grad, ref_down.grad)
    torch.testing.assert_close(up.grad, ref_up.grad)


@pytest.mark.parametrize('dtype', [torch.bfloat16])
def test_low_rank_terms_under_autocast(dtype):
    linear, sites = qkv_linear()
    down, up = factors()
    sites['q'].add_low_rank(LowRankTerm(lambda: (down, up)))
    x = torch.randn(*TOKENS, C)
    with torch.autocast('cpu', dtype=dtype):
        out = linear(x)
    assert out.dtype == dtype
    expected = F.linear(x, linear.weight, linear.bias)[..., :C] + x @ down.t() @ up.t()
    torch.testing.assert_close(out[..., :C].float(), expected, rtol=0.05, atol=0.1)

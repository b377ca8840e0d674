"""Small building blocks shared by several methods."""
import math
from typing import Callable

import torch
from torch import Tensor, nn

from vpetl_mm.models.specs.base import LowRankTerm


class LowRankLinear(nn.Module):
    """``x -> scale * up(down(dropout(x)))`` with no bias: a rank-``r`` linear map.

    ``down`` is ``(rank, in_features)``, initialised kaiming-uniform (a=sqrt(5), as ``nn.Linear``);
    ``up`` is ``(out_features, rank)``, initialised to zero, so the map starts at exactly zero and
    both factors receive gradients from the first step.

    Args:
        in_features (int): input width ``C_in``.
        out_features (int): output width ``C_out``.
        rank (int): the rank ``r``.
        scale (float): multiplier of the product (LoRA's ``alpha / r``).
        dropout (float): dropout on the input (training only).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, scale: float = 1.0,
                 dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f'rank must be >= 1, got {rank}')
        self.scale = scale
        self.down = nn.Parameter(torch.empty(rank, in_features))
        self.up = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(..., C_in)`` -> ``(..., C_out)``."""
        return (self.dropout(x) @ self.down.t()) @ self.scaled_up().t()

    def scaled_up(self) -> Tensor:
        """``scale * up`` ``(C_out, r)`` (no multiply when the scale is 1)."""
        return self.up if self.scale == 1 else self.up * self.scale

    def term(self) -> LowRankTerm:
        """This map as a :class:`LowRankTerm` for :meth:`LinearSite.add_low_rank`."""
        dropout = self.dropout if isinstance(self.dropout, nn.Dropout) else None
        return LowRankTerm(lambda: (self.down, self.scaled_up()), input_dropout=dropout)

    def delta_weight(self) -> Tensor:
        """The ``(C_out, C_in)`` matrix this map adds to a linear weight."""
        return self.scaled_up() @ self.down

    def extra_repr(self) -> str:
        r, c_in = self.down.shape
        return f'{c_in} -> {r} -> {self.up.shape[0]}, scale={self.scale}'


class DropPath(nn.Module):
    """Stochastic depth on a residual branch ``x`` ``(B, ...)``: in training each sample's
    branch is zeroed with probability ``p`` and otherwise scaled by ``1 / (1 - p)``; the
    identity in eval mode or at ``p = 0``.

    One pass over ``x``: the per-sample mask ``(B, 1, ..., 1)`` carries the scale (as timm's
    ``drop_path``; mmcv's divides ``x`` and then multiplies, two passes).

    Args:
        p (float): drop probability, ``0 <= p < 1``.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f'drop path probability {p}: must be in [0, 1)')
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'p={self.p}'


class NoGradBlocks:
    """Runs frozen blocks with autograd off (side methods whose backward never enters the
    backbone), giving the caller's grad mode back after every block."""

    def __init__(self):
        self._modes = []

    def install(self, blocks) -> None:
        """``blocks``: the spec's :class:`BlockInfo` list. Register this before the method's own
        block-output hooks, so those run with the caller's grad mode."""
        for block in blocks:
            block.module.register_forward_pre_hook(lambda m, a: self._enter())
            block.module.register_forward_hook(lambda m, a, out: self._exit())

    def reset(self) -> None:
        """Restore the caller's mode if a block raised mid-forward (call before a forward)."""
        if self._modes:
            torch.set_grad_enabled(self._modes[0])
            self._modes = []

    def caller_grad(self) -> bool:
        """The grad mode outside the blocks (inside a block autograd is off)."""
        return self._modes[0] if self._modes else torch.is_grad_enabled()

    def _enter(self):
        self._modes.append(torch.is_grad_enabled())
        torch.set_grad_enabled(False)

    def _exit(self):
        torch.set_grad_enabled(self._modes.pop())


def conv_frames(conv: Callable[[Tensor], Tensor], tokens: Tensor, layout) -> Tensor:
    """Apply the 2-D map ``conv`` ``(B', c, H, W) -> (B', c, H, W)`` to every frame of the grid
    tokens of ``tokens`` ``(B, N, c)``; prefix tokens (cls) pass unchanged.

    An ``(H, W)`` grid is one frame. A ``(T, H, W)`` grid (video; the specs give its tokens in
    T-major order) is ``T`` frames, convolved as a batch of ``B * T`` images: no value crosses
    from one frame to another (temporal mixing stays with the backbone's attention).
    """
    p, grid = layout.num_prefix, tuple(layout.grid)
    if len(grid) not in (2, 3):
        raise ValueError(f'per-frame 2-D convolution needs an (H, W) or (T, H, W) token grid, '
                         f'got {grid}')
    frames = grid[0] if len(grid) == 3 else 1
    h, w = grid[-2:]
    b, _, c = tokens.shape
    g = tokens[:, p:].reshape(b * frames, h * w, c).transpose(1, 2).reshape(b * frames, c, h, w)
    g = conv(g).flatten(2).transpose(1, 2).reshape(b, frames * h * w, c)
    return torch.cat([tokens[:, :p], g], dim=1) if p else g

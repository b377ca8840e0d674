"""Small building blocks shared by several methods."""
import math

import torch
from torch import Tensor, nn


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
        h = self.dropout(x) @ self.down.t()
        return (h @ self.up.t()) * self.scale

    def delta_weight(self) -> Tensor:
        """The ``(C_out, C_in)`` matrix this map adds to a linear weight."""
        return (self.up @ self.down) * self.scale

    def extra_repr(self) -> str:
        r, c_in = self.down.shape
        return f'{c_in} -> {r} -> {self.up.shape[0]}, scale={self.scale}'


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

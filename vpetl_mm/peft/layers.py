"""Small building blocks shared by several methods."""
import math
from typing import Callable, Union

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


class BottleneckAdapter(nn.Module):
    """The bottleneck adapter of the adapter family, ``(..., C) -> (..., C)``:
    ``branch(x) = scale * up(dropout(act(down(norm(x)))))`` through a width-``bottleneck``
    hidden layer; ``forward`` returns ``x + branch(x)`` with ``residual`` and ``branch(x)``
    otherwise.

    Args:
        dims (int): token width ``C``.
        bottleneck (int): hidden width ``d``.
        act (str): ``'gelu'`` or ``'relu'``.
        dropout (float): dropout after the activation (training only).
        input_norm (bool): a trainable LayerNorm on the input (AdaptFormer's ``"in"``).
        scale (float | 'learnable'): the fixed output scale, or a learnable scalar (init 1).
        init (str): ``'lora'``: ``down`` kaiming-uniform (a=sqrt(5)), ``up`` zero, biases zero
            (the branch is exactly zero and learns from the first step); ``'trunc_normal'``:
            both weights N(0, ``init_std``) truncated at two std, biases zero (Houlsby's
            near-identity); ``'xavier'``: xavier-uniform weights, biases N(0, 1e-6) (ms-swift's
            Res-Tuning adapter).
        init_std (float): the std of ``'trunc_normal'``.
        zero_up (bool): zero ``up`` (weight and bias) after the init (``'xavier'``'s
            ``zero_init_last``; implied by ``'lora'``).
        residual (bool): ``forward`` adds the input.
    """
    ACTIVATIONS = {'gelu': nn.GELU, 'relu': nn.ReLU}

    def __init__(self, dims: int, bottleneck: int, act: str = 'gelu', dropout: float = 0.0,
                 input_norm: bool = False, scale: Union[float, str] = 1.0, init: str = 'lora',
                 init_std: float = 0.02, zero_up: bool = False, residual: bool = False):
        super().__init__()
        if bottleneck < 1:
            raise ValueError(f'bottleneck must be >= 1, got {bottleneck}')
        if act not in self.ACTIVATIONS:
            raise ValueError(f'act={act!r}: choose from {sorted(self.ACTIVATIONS)}')
        if isinstance(scale, str) and scale != 'learnable':
            raise ValueError(f"scale={scale!r}: a number or 'learnable'")
        self.residual = residual
        if input_norm:
            self.norm = nn.LayerNorm(dims)
        self.down = nn.Linear(dims, bottleneck)
        self.act = self.ACTIVATIONS[act]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dims)
        if scale == 'learnable':
            self.scale = nn.Parameter(torch.ones(1))
        else:
            self.scale = float(scale)
        self._init(init, init_std, zero_up)

    @torch.no_grad()
    def _init(self, init: str, std: float, zero_up: bool) -> None:
        if init == 'lora':
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            zero_up = True
        elif init == 'trunc_normal':
            for linear in (self.down, self.up):
                nn.init.trunc_normal_(linear.weight, std=std, a=-2 * std, b=2 * std)
        elif init == 'xavier':
            for linear in (self.down, self.up):
                nn.init.xavier_uniform_(linear.weight)
                nn.init.normal_(linear.bias, std=1e-6)
        else:
            raise ValueError(f"init={init!r}: choose 'lora', 'trunc_normal' or 'xavier'")
        if init != 'xavier':
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.bias)
        if zero_up:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def branch(self, x: Tensor) -> Tensor:
        """The bottleneck alone, ``(..., C) -> (..., C)``."""
        if hasattr(self, 'norm'):
            x = self.norm(x)
        out = self.up(self.dropout(self.act(self.down(x))))
        return out if isinstance(self.scale, float) and self.scale == 1 else out * self.scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x) if self.residual else self.branch(x)

    def extra_repr(self) -> str:
        return f'scale={self.scale}, residual={self.residual}'


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

    def install(self, spec, blocks) -> None:
        """``blocks``: the spec's :class:`BlockInfo` list. Register this before the method's own
        block-output hooks, so those run with the caller's grad mode."""
        for block in blocks:
            spec.on_input(block.module, lambda x: self._enter())
            spec.on_output(block.module, lambda out: self._exit())

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

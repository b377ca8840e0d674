"""LAST: low-rank attention side-tuning.

Tang et al., "Low-rank Attention Side-Tuning for Parameter-Efficient Fine-Tuning",
arXiv 2402.04009. No code was released; the choices below that the paper's description leaves
open are ours and are named in the class docstring.
"""
import math
from typing import Optional

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod
from .layers import NoGradBlocks


class LowRankSelfAttention(nn.Module):
    """``X -> up(softmax(Q K^T / sqrt(r)) V)`` with ``Q, K, V = LN(X) A_{Q,K,V}`` of width
    ``r``: ``(B, N, C) -> (B, N, C)``, no FFN. ``up`` starts at zero (the block's output is
    exactly zero at initialisation)."""

    def __init__(self, dims: int, rank: int):
        super().__init__()
        self.norm = nn.LayerNorm(dims)
        self.qkv = nn.Linear(dims, 3 * rank, bias=False)
        self.up = nn.Linear(rank, dims)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.rank = rank

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(self.norm(x)).split(self.rank, dim=-1)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.rank), dim=-1)
        return self.up(attn @ v)


@PEFT_METHODS.register_module()
class LAST(PEFTMethod):
    """A side network of low-rank self-attention blocks reading the frozen backbone's group
    outputs as fixed features: with ``z_i`` the (detached) output of block group ``i`` (``gap``
    blocks each), ``s_i = s_{i-1} + LSA_i(z_i + s_{i-1})`` from ``s_0 = 0``, and the last block's
    output becomes ``z_m + s_m``. This is the paper's bias-corrected ``u_m - sum_{i<m} z_i`` with
    ``u_i = u_{i-1} + z_i + LSA_i(.)``, ``u_0 = z_0``.

    Our choices where the paper's text is silent: each LSA reads the corrected representation
    ``z_i + s_{i-1}``; one attention head; the up projection starts at zero (the backbone output
    is reproduced exactly at initialisation); defaults ``rank=16``, ``gap=1`` (about V-PETL's
    0.66M with a head). The frozen blocks run with autograd off: no gradient and no stored
    activation inside the backbone. Plain ViTs only.

    Modules: ``peft.<name>.lsa``.

    Args:
        rank (int): attention width ``r``. Defaults to 16.
        gap (int): blocks per group ``g``; divides the depth. Defaults to 1.

    ViT-B/16, r=16, g=1: 12 x (3 C + 4 C r) = 617,472 parameters.
    """
    paper = ('Tang et al., Low-rank Attention Side-Tuning for Parameter-Efficient Fine-Tuning '
             '(LAST), arXiv 2402.04009')
    placement = 'low-rank self-attention side blocks on detached group outputs, added at the end'

    def __init__(self, rank: int = 16, gap: int = 1):
        super().__init__()
        if rank < 1 or gap < 1:
            raise ValueError(f'LAST rank and gap must be >= 1, got {rank}, {gap}')
        self.rank = rank
        self.gap = gap
        self._side: Optional[Tensor] = None
        self._no_grad = NoGradBlocks()

    def attach(self, backbone, spec):
        if not spec.accepts_extra_tokens or len({b.dims for b in spec.blocks}) != 1:
            raise TypeError(f'LAST runs one side sequence beside the blocks; '
                            f'{type(spec).__name__} changes width or length between blocks')
        n = len(spec.blocks)
        if n % self.gap:
            raise ValueError(f'LAST gap={self.gap} does not divide the {n} blocks')
        self.lsa = nn.ModuleList(LowRankSelfAttention(spec.blocks[0].dims, self.rank)
                                 for _ in range(n // self.gap))
        self.to(spec.blocks[0].norm1.weight.device)
        self._no_grad.install(spec, spec.blocks)
        for i, block in enumerate(spec.blocks):
            if (i + 1) % self.gap == 0:
                spec.on_block_output(block, lambda t, layout, g=(i + 1) // self.gap - 1,
                                     end=i == n - 1: self._step(t, g, end))

    def begin_forward(self):
        self._side = None
        self._no_grad.reset()

    def _step(self, tokens: Tensor, group: int, last: bool) -> Tensor:
        z = tokens.detach()
        side = self._side if self._side is not None else torch.zeros_like(z)
        self._side = side + self.lsa[group](z + side)
        return (z + self._side).to(tokens.dtype) if last else tokens

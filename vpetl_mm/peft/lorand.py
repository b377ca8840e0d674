"""LoRand: low-rank adapters whose projections are synthesised from small factors.

Yin et al., "1% VS 100%: Parameter-Efficient Low Rank Adapter for Dense Predictions", CVPR 2023.
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks


class SynthesizedLinear(nn.Module):
    """``x -> x W + b`` with ``W = sum_{i=1}^{alpha} A_i G_i B_i`` ``(in, out)``.

    ``A`` ``(alpha, in, beta)``, the kernels ``G`` ``(alpha, beta, beta)`` and ``B``
    ``(alpha, beta, out)`` are kaiming-uniform (a=sqrt(5)) per branch, the bias uniform in
    ``+-1/sqrt(in)``, as the authors' code.
    """

    def __init__(self, in_features: int, out_features: int, branches: int, kernel: int):
        super().__init__()
        self.a = nn.Parameter(torch.empty(branches, in_features, kernel))
        self.g = nn.Parameter(torch.empty(branches, kernel, kernel))
        self.b = nn.Parameter(torch.empty(branches, kernel, out_features))
        for factor in (*self.a, *self.g, *self.b):
            nn.init.kaiming_uniform_(factor, a=math.sqrt(5))
        bound = 1 / math.sqrt(in_features)
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    def weight(self) -> Tensor:
        return (self.a @ self.g @ self.b).sum(0)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(..., in)`` -> ``(..., out)``."""
        return x @ self.weight() + self.bias


class LoRandAdapter(nn.Module):
    """``h -> h + P2(GELU(P1(h)))`` with synthesised ``P1`` ``(C, m)`` and ``P2`` ``(m, C)``."""

    def __init__(self, dims: int, bottleneck: int, branches: int, kernel: int):
        super().__init__()
        self.down = SynthesizedLinear(dims, bottleneck, branches, kernel)
        self.up = SynthesizedLinear(bottleneck, dims, branches, kernel)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.up(F.gelu(self.down(h)))


@PEFT_METHODS.register_module()
class LoRand(PEFTMethod):
    """Two LoRand adapters per block, on the attention projection output and on the MLP output
    (the branch outputs, before their residual adds): ``a <- LoRand1(a)``, ``m <- LoRand2(m)``.

    Modules ``lorand_attn`` / ``lorand_mlp`` attached to each block. The adapters are nonlinear,
    so they do not merge (their synthesised weights could be cached for inference).

    Args:
        branches (int): ``alpha``, branches summed in each weight. Defaults to 2.
        kernel (int): ``beta``, the kernel size of each branch. Defaults to 8.
        factor (int): bottleneck ``m = C // factor``. Defaults to 2.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    Swin-B, alpha 2, beta 8: 1,203,456 parameters (V-PETL's 1.20M).
    """
    paper = ('Yin et al., 1% VS 100%: Parameter-Efficient Low Rank Adapter for Dense '
             'Predictions (LoRand), CVPR 2023')
    placement = ('two adapters with low-rank synthesised projections, after the attention '
                 'projection and after the MLP')

    def __init__(self, branches: int = 2, kernel: int = 8, factor: int = 2,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if min(branches, kernel, factor) < 1:
            raise ValueError(f'LoRand branches, kernel and factor must be >= 1, got '
                             f'{branches}, {kernel}, {factor}')
        self.branches = branches
        self.kernel = kernel
        self.factor = factor
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'LoRand blocks'):
            args = (block.dims, block.dims // self.factor, self.branches, self.kernel)
            first, second = (spec.add_module(block.module, name, LoRandAdapter(*args))
                             for name in ('lorand_attn', 'lorand_mlp'))
            block.sites['proj'].add_output_transform(lambda x, y, a=first: a(y))
            spec.on_output(block.mlp, lambda out, a=second: a(out))

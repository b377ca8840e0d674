"""Compacter: adapters whose projections are parameterised hypercomplex multiplication (PHM)
layers with rules shared by every layer.

Karimi Mahabadi et al., "Compacter: Efficient Low-Rank Hypercomplex Adapter Layers",
NeurIPS 2021; vision placement as in the PEViT port (after the MLP, Compacter++).
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks


def kron_sum(rule: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """``H = sum_i A_i (x) (L_i R_i)``.

    Args:
        rule: ``A`` of shape ``(n, n, n)``.
        left: ``L`` of shape ``(n, p, r)``; right: ``R`` of shape ``(n, r, q)``.

    Returns:
        ``H`` of shape ``(n p, n q)``, ``H[a p + c, b q + d] = sum_i A_i[a, b] B_i[c, d]``.
    """
    n, p, q = rule.shape[0], left.shape[1], right.shape[2]
    blocks = left @ right  # (n, p, q)
    return torch.einsum('iab,icd->acbd', rule, blocks).reshape(n * p, n * q)


class PHMLinear(nn.Module):
    """``x -> x H + b`` with ``H = sum_i A_i (x) L_i R_i`` (rank-``r`` factors ``L_i R_i``).

    The rule ``A`` ``(n, n, n)`` is not owned here: it is passed to :meth:`forward`, so one
    rule serves every layer. ``L``, ``R`` are glorot-uniform per factor, or ``R`` is zero with
    ``zero_init=True`` (the map then starts at exactly zero and both factors still learn).

    Args:
        in_features (int), out_features (int): both divisible by ``n``.
        n (int): number of Kronecker summands.
        rank (int): rank ``r`` of each ``L_i R_i``.
        zero_init (bool): start ``R`` at zero.
    """

    def __init__(self, in_features: int, out_features: int, n: int, rank: int = 1,
                 zero_init: bool = False):
        super().__init__()
        for name, width in (('in_features', in_features), ('out_features', out_features)):
            if width % n:
                raise ValueError(f'Compacter: {name}={width} is not divisible by phm_dim={n}')
        self.left = nn.Parameter(torch.empty(n, in_features // n, rank))
        self.right = nn.Parameter(torch.empty(n, rank, out_features // n))
        self.bias = nn.Parameter(torch.zeros(out_features))
        for factor in (*self.left, *self.right):
            nn.init.xavier_uniform_(factor)
        if zero_init:
            nn.init.zeros_(self.right)

    def forward(self, x: Tensor, rule: Tensor) -> Tensor:
        """``x``: ``(..., in_features)`` -> ``(..., out_features)``."""
        return x @ kron_sum(rule, self.left, self.right) + self.bias


class PHMAdapter(nn.Module):
    """``h -> h + up(GELU(down(LN(h))))`` with PHM ``down`` / ``up``, ``(..., C) -> (..., C)``.

    ``up`` starts at zero, so the adapter is exactly the identity at initialisation.
    """

    def __init__(self, dims: int, bottleneck: int, n: int, rank: int, input_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dims) if input_norm else nn.Identity()
        self.down = PHMLinear(dims, bottleneck, n, rank)
        self.up = PHMLinear(bottleneck, dims, n, rank, zero_init=True)

    def forward(self, h: Tensor, rule: Tensor) -> Tensor:
        return h + self.up(F.gelu(self.down(self.norm(h), rule)), rule)


@PEFT_METHODS.register_module()
class Compacter(PEFTMethod):
    """A PHM adapter on the MLP output ``m`` of every block: ``m <- m + up(GELU(down(LN(m))))``
    (before drop-path), every PHM layer sharing one rule ``A`` ``(n, n, n)``.

    Modules: ``compacter`` attached to each block; the shared rule is ``peft.<name>.phm_rule``
    (uniform in [-1, 1], as the PEViT port initialises it).

    Deviation: the PEViT port initialises every factor glorot-uniform, so its adapters perturb
    the frozen features from the first step; here the up-projection's right factors start at
    zero, which makes the model exactly the pretrained one at initialisation (both factors still
    receive gradients from the first step).

    Args:
        bottleneck (int): adapter width, divisible by ``phm_dim``. Defaults to 64 (PEViT).
        phm_dim (int): ``n``, the number of Kronecker summands. Defaults to 4.
        rank (int): rank of the factorised ``B_i``. Defaults to 1.
        input_norm (bool): LayerNorm on the adapter input. Defaults to True.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, bottleneck 64, n=4: 12 x 4,032 + 64 = 48,448 parameters (30,016 without the LN).
    """
    placement = 'PHM bottleneck after the MLP, inside its residual branch, before drop-path'
    paper = ('Karimi Mahabadi et al., Compacter: Efficient Low-Rank Hypercomplex Adapter Layers, '
             'NeurIPS 2021')

    def __init__(self, bottleneck: int = 64, phm_dim: int = 4, rank: int = 1,
                 input_norm: bool = True, blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if phm_dim < 1 or rank < 1:
            raise ValueError(f'Compacter: phm_dim and rank must be >= 1, got {phm_dim}, {rank}')
        self.bottleneck = bottleneck
        self.phm_dim = phm_dim
        self.rank = rank
        self.input_norm = input_norm
        self.blocks = blocks
        self.phm_rule = nn.Parameter(torch.empty(phm_dim, phm_dim, phm_dim))

    def attach(self, backbone, spec):
        blocks = select_blocks(spec, self.blocks, 'Compacter blocks')
        device = blocks[0].norm2.weight.device
        with torch.no_grad():
            self.phm_rule.data = torch.empty_like(self.phm_rule, device=device).uniform_(-1, 1)
        for block in blocks:
            adapter = spec.add_module(block.module, 'compacter', PHMAdapter(
                block.dims, self.bottleneck, self.phm_dim, self.rank, self.input_norm))
            spec.on_output(block.mlp, lambda out, adapter=adapter: adapter(out, self.phm_rule))

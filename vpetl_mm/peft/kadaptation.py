"""KAdaptation: Kronecker-product updates of the query and value projections.

He et al., "Parameter-efficient Model Adaptation for Vision Transformers", AAAI 2023.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks
from .compacter import kron_sum


class KroneckerDelta(nn.Module):
    """The per-layer ("fast") factors of ``H = sum_i A_i (x) (u_i v_i^T)`` for one projection.

    ``u`` ``(n, C/n, r)`` is glorot-uniform per factor, ``v`` ``(n, r, C/n)`` zero, so ``H`` is
    zero at initialisation and both factors (and the shared rule) learn from the first step.
    """

    def __init__(self, dims: int, n: int, rank: int):
        super().__init__()
        if dims % n:
            raise ValueError(f'KAdaptation: width {dims} is not divisible by phm_dim={n}')
        self.u = nn.Parameter(torch.empty(n, dims // n, rank))
        self.v = nn.Parameter(torch.zeros(n, rank, dims // n))
        for factor in self.u:
            nn.init.xavier_uniform_(factor)

    def matrix(self, rule: Tensor) -> Tensor:
        """``H`` ``(C, C)`` (input rows, output columns) for the rule ``A`` ``(n, n, n)``."""
        return kron_sum(rule, self.u, self.v)


class SharedRule(nn.Module):
    """The layer-shared ("slow") weights ``A_i = a_i b_i^T`` ``(n, n, n)``, uniform(-0.01, 0.01)."""

    def __init__(self, n: int):
        super().__init__()
        self.a = nn.Parameter(torch.empty(n, n, 1).uniform_(-0.01, 0.01))
        self.b = nn.Parameter(torch.empty(n, 1, n).uniform_(-0.01, 0.01))

    def forward(self) -> Tensor:
        return self.a @ self.b


class KAdaptationLayer(nn.Module):
    """The q and v updates of one block and their shared bias ``b`` ``(C,)``."""

    def __init__(self, dims: int, n: int, rank: int, targets: Sequence[str]):
        super().__init__()
        self.deltas = nn.ModuleDict({t: KroneckerDelta(dims, n, rank) for t in targets})
        self.bias = nn.Parameter(torch.zeros(dims))


@PEFT_METHODS.register_module()
class KAdaptation(PEFTMethod):
    """``q <- q + s x Drop(H_q) + b`` and ``v <- v + s x Drop(H_v) + b`` in every block.

    ``x`` is the attention input (the norm1 output), ``H = sum_{i=1}^{n} A_i (x) B_i`` with the
    rank-1 ``A_i`` shared by all blocks (one rule for q, one for v: ``peft.<name>.rules``) and
    the rank-``r`` ``B_i = u_i v_i^T`` per block (``kadaptation`` attached to the attention
    module, whose ``bias`` ``b`` is shared by the q and v updates as in the authors' code).
    Dropout acts on the matrix ``H`` (training only). Being linear in ``x``, the update folds
    exactly into the qkv weight and bias (:meth:`merge`).

    Deviations from the released code (PEViT), each of which breaks it: both rank-1 factors of
    every ``B_i`` start at zero there, so no factor (and no rule) ever receives a gradient; here
    ``v`` alone starts at zero. Its value update uses the query's factors; here q and v have
    their own. Its query update is added in a scrambled token / head order; here it is added to
    the projected queries (before the attention's ``1/sqrt(d)`` scaling, where the authors add
    it after: a constant factor on the query update's scale).

    Args:
        phm_dim (int): ``n``; divides every width. Defaults to 32.
        rank (int): rank of ``B_i``. Defaults to 1.
        scale (float): ``s``; the authors' ``alpha / dim * 5 = 128 / 4 * 5``. Defaults to 160.
        dropout (float): dropout on ``H``. Defaults to 0.5.
        targets (sequence of str): among ``'q'``, ``'k'``, ``'v'``. Defaults to ``('q', 'v')``.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16 and CLIP ViT-B/32, defaults: 12 x (2 x 2 x 32 x 24 + 768) + 2 x 2 x 32 x 32
    = 50,176 parameters.
    """
    mergeable = True
    unmergeable = True
    paper = ('He et al., Parameter-efficient Model Adaptation for Vision Transformers '
             '(KAdaptation), AAAI 2023')
    placement = 'Kronecker-product updates of q and v (slow weights shared by all blocks)'

    def __init__(self, phm_dim: int = 32, rank: int = 1, scale: float = 160.0,
                 dropout: float = 0.5, targets: Sequence[str] = ('q', 'v'),
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        bad = [t for t in targets if t not in ('q', 'k', 'v')]
        if bad or not targets:
            raise ValueError(f'KAdaptation targets={list(targets)}: choose among q, k, v')
        if phm_dim < 1 or rank < 1:
            raise ValueError(f'KAdaptation: phm_dim and rank must be >= 1, got {phm_dim}, {rank}')
        self.phm_dim = phm_dim
        self.rank = rank
        self.scale = scale
        self.dropout = dropout
        self.targets = tuple(targets)
        self.blocks = blocks
        self.rules = nn.ModuleDict({t: SharedRule(phm_dim) for t in self.targets})
        self._entries = []  # (site, layer, target): what fold() writes where

    def attach(self, backbone, spec):
        blocks = select_blocks(spec, self.blocks, 'KAdaptation blocks')
        self.rules.to(blocks[0].norm1.weight.device)
        for block in blocks:
            layer = KAdaptationLayer(block.dims, self.phm_dim, self.rank, self.targets)
            spec.add_module(block.attn, 'kadaptation', layer)
            for target in self.targets:
                site = block.sites[target]
                site.add_delta(lambda x, layer=layer, t=target: self._delta(x, layer, t))
                self._entries.append((site, layer, target))

    def _matrix(self, layer: KAdaptationLayer, target: str) -> Tensor:
        return layer.deltas[target].matrix(self.rules[target]())

    def _delta(self, x: Tensor, layer: KAdaptationLayer, target: str) -> Tensor:
        """``x`` ``(..., C)`` -> ``s x Drop(H) + b`` ``(..., C)``."""
        h = F.dropout(self._matrix(layer, target), self.dropout, self.training)
        return self.scale * (x @ h) + layer.bias

    def fold(self):
        for site, _, _ in self._entries:
            if site.bias is None:
                raise ValueError(f'cannot fold KAdaptation into {type(site.owner).__name__}.'
                                 f'{site.weight_name}: the linear has no bias of its own')
        self._add(1.0)

    def unfold(self):
        self._add(-1.0)

    def _add(self, sign: float) -> None:
        """Add ``sign`` times the update to the weights and biases."""
        for site, layer, target in self._entries:
            site.merge_(sign * self.scale * self._matrix(layer, target).t(), sign * layer.bias)

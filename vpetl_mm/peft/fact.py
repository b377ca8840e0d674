"""FacT: factor-tuning, weight updates factorised with factors shared by all blocks.

Jie and Deng, "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer", AAAI 2023.
"""
import math
from typing import Tuple

import torch
from torch import Tensor, nn

from vpetl_mm.models.specs.base import LowRankTerm
from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod

ATTN_SLOTS = ('q', 'k', 'v', 'proj')


class FacT(PEFTMethod):
    """Shared ``U`` ``(r, C)`` and ``V`` ``(C, r)``; per weight a core ``K`` ``(r, r)``; the
    update of a ``C x C`` weight is ``dW = s V K U``.

    The MLP weights (``C -> mC`` and ``mC -> C``) are treated as ``m`` chunks of ``C x C``, each
    with its own core: ``fc1`` output chunk ``i`` gets ``s V K_i U x``, ``fc2`` gets
    ``s V sum_i K_i U h_i`` over its input chunks ``h_i``. Dropout acts on the core output. ``V``
    starts at zero, so the output is unchanged at initialisation. Every update is linear in the
    frozen weight's input, so :meth:`merge` adds ``dW`` exactly.

    Subclasses say where the cores come from (FacT-TT: free per block; FacT-TK: a shared tensor).
    The factors are shared by all blocks, so every block must have the same width (plain ViTs;
    Swin stages differ and are refused).

    Args:
        rank (int): ``r``.
        scale (float): ``s``.
        dropout (float): dropout on the core output. Defaults to 0.1.
    """
    mergeable = True
    unmergeable = True
    paper = ('Jie and Deng, FacT: Factor-Tuning for Lightweight Adaptation on Vision '
             'Transformer, AAAI 2023')

    def __init__(self, rank: int = 8, scale: float = 1.0, dropout: float = 0.1):
        super().__init__()
        self.rank = rank
        self.scale = scale
        self.dropout = nn.Dropout(dropout)
        self._entries = []  # (site, delta fn or LowRankTerm, dW fn)

    # -- structure --------------------------------------------------------------------------
    def _check(self, spec):
        dims = {b.dims for b in spec.blocks}
        if len(dims) != 1:
            raise ValueError(f'{type(self).__name__} shares its factors across blocks, which '
                             f'needs one width; this backbone has widths {sorted(dims)} '
                             '(Swin stages)')
        c = dims.pop()
        hidden = spec.blocks[0].sites['fc1'].out_features
        if hidden % c:
            raise ValueError(f'{type(self).__name__}: MLP width {hidden} is not a multiple of {c}')
        return c, hidden // c

    def core(self, block: int, slot: int) -> Tensor:
        """The ``(r, r)`` core of ``slot`` (``q, k, v, proj, fc1_0.., fc2_0..``) of ``block``."""
        raise NotImplementedError(f'{type(self).__name__} must say where its cores come from')

    def _init_factors(self, dims: int, device) -> None:
        self.u = nn.Parameter(torch.empty(self.rank, dims, device=device))
        nn.init.kaiming_uniform_(self.u, a=math.sqrt(5))
        self.v = nn.Parameter(torch.zeros(dims, self.rank, device=device))

    def attach(self, backbone, spec):
        dims, m = self._check(spec)
        self.mlp_chunks = m
        device = spec.blocks[0].norm1.weight.device
        self._init_factors(dims, device)
        self._init_cores(len(spec.blocks), 4 + 2 * m, device)
        for block in spec.blocks:
            i = block.index
            for slot, role in enumerate(ATTN_SLOTS):  # q, k, v share one pass over x
                term = LowRankTerm(lambda i=i, s=slot: self._attn_factors(i, s),
                                   rank_dropout=self.dropout)
                block.sites[role].add_low_rank(term)
                self._entries.append((block.sites[role], lambda i=i, s=slot: self._attn_dw(i, s)))
            self._register(block.sites['fc1'], lambda x, i=i: self._fc1_delta(x, i),
                           lambda i=i: self._fc1_dw(i))
            self._register(block.sites['fc2'], lambda h, i=i: self._fc2_delta(h, i),
                           lambda i=i: self._fc2_dw(i))

    def _register(self, site, delta, dw):
        site.add_delta(delta)
        self._entries.append((site, dw))

    # -- forward: x (..., C) ---------------------------------------------------------------
    def _attn_factors(self, block: int, slot: int) -> Tuple[Tensor, Tensor]:
        """``K U`` ``(r, C)`` and ``s V`` ``(C, r)``: the delta is ``Drop(x (K U)^T) (s V)^T``."""
        return self.core(block, slot) @ self.u, self.v * self.scale

    def _fc1_delta(self, x: Tensor, block: int) -> Tensor:
        u = x @ self.u.t()                                              # (..., r)
        cores = torch.stack([self.core(block, 4 + j) for j in range(self.mlp_chunks)])
        h = torch.einsum('...r,jor->...jo', u, cores)                   # (..., m, r)
        return (self.dropout(h) @ self.v.t()).flatten(-2) * self.scale  # (..., m*C)

    def _fc2_delta(self, h: Tensor, block: int) -> Tensor:
        u = h.unflatten(-1, (self.mlp_chunks, -1)) @ self.u.t()        # (..., m, r)
        cores = torch.stack([self.core(block, 4 + self.mlp_chunks + j)
                             for j in range(self.mlp_chunks)])
        out = torch.einsum('...jr,jor->...o', u, cores)                 # (..., r)
        return self.dropout(out) @ self.v.t() * self.scale

    # -- merge -------------------------------------------------------------------------------
    def _attn_dw(self, block: int, slot: int) -> Tensor:
        return self.scale * self.v @ self.core(block, slot) @ self.u

    def _fc1_dw(self, block: int) -> Tensor:
        return torch.cat([self._attn_dw(block, 4 + j) for j in range(self.mlp_chunks)], 0)

    def _fc2_dw(self, block: int) -> Tensor:
        return torch.cat([self._attn_dw(block, 4 + self.mlp_chunks + j)
                          for j in range(self.mlp_chunks)], 1)

    def fold(self, sign: float = 1.0):
        for site, dw in self._entries:
            site.merge_(sign * dw())

    def unfold(self):
        self.fold(-1.0)


@PEFT_METHODS.register_module(name='FacT-TT')
@PEFT_METHODS.register_module()
class FacTTT(FacT):
    """FacT-TT: a free ``(r, r)`` core per weight and block (``r x 4r`` / ``4r x r`` for the MLP).

    Cores keep ``nn.Linear``'s init, as in the authors' code. ViT-B/16: ``1536 r + 144 r^2``
    parameters (r=8: 21,504).
    """
    placement = ('low-rank factors shared by all blocks, a free core per block for qkv, proj, '
                 'fc1 and fc2')

    def _init_cores(self, blocks: int, slots: int, device) -> None:
        self.cores = nn.Parameter(torch.empty(blocks, slots, self.rank, self.rank,
                                              device=device))
        m = self.mlp_chunks
        for s in range(slots):
            fan_in = self.rank * (m if s >= 4 + m else 1)  # fc2's core reads m*r features
            nn.init.uniform_(self.cores[:, s], -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def core(self, block, slot):
        return self.cores[block, slot]


@PEFT_METHODS.register_module(name='FacT-TK')
@PEFT_METHODS.register_module()
class FacTTK(FacT):
    """FacT-TK: cores from one shared tensor, ``K_{b,s} = C P[:, b*S + s]`` with
    ``C`` ``(r, r, r)`` and ``P`` ``(r, blocks * S)`` (S = 4 + 2m slots per block), both
    xavier-uniform. ViT-B/16: ``1536 r + 144 r + r^3`` parameters (r=32: 86,528).

    The authors' ``fact_tk.py`` builds the same ``T_b = C P[:, b*S:(b+1)*S]`` ``(r, r, S)``
    and reads it differently. q, k, v, proj: it computes ``x U^T T_b[:, :, s]``, so its core
    is ours transposed (``dW = s V T^T U``). fc1, fc2: it reshapes the ``m`` stacked cores
    ``(r, r, m)`` to ``(r, m r)`` with the slot index fastest and cuts the ``m r`` axis into
    ``m`` chunks of ``r``. Column ``j`` of chunk ``a`` is then column ``(a r + j) // m`` of slot
    ``(a r + j) % m``, not column ``j`` of slot ``a``. fc1 uses these chunks transposed
    (``u @ K``), fc2 as we do. Scale, dropout placement, slot order and inits are the same. Their
    attention tensors load here with ``core_tensor = FacTc.transpose(0, 1)``; their fc1 / fc2
    have no ``(C, P)`` equivalent here. We keep the paper's formula: contiguous ``C x C`` chunks
    and the core's first mode on the output side, as in FacT-TT and the authors' ``fact_tt.py``
    (tests/test_peft/test_fact_tk_authors.py shows both on the same tensors).
    """
    placement = ('low-rank factors shared by all blocks, cores from one shared tensor '
                 '(Tucker-style) for qkv, proj, fc1 and fc2')

    def _init_cores(self, blocks: int, slots: int, device) -> None:
        self.slots = slots
        self.core_tensor = nn.Parameter(torch.empty(self.rank, self.rank, self.rank,
                                                    device=device))
        self.core_weights = nn.Parameter(torch.empty(self.rank, blocks * slots, device=device))
        nn.init.xavier_uniform_(self.core_tensor)
        nn.init.xavier_uniform_(self.core_weights)

    def core(self, block, slot):
        return self.core_tensor @ self.core_weights[:, block * self.slots + slot]

"""PATT: parallel attention, a prefix-tuning variant that adapts keys and values.

Yu et al., "Towards a Unified View on Visual Parameter-Efficient Transfer Learning",
arXiv 2210.00788 (V-PETL's video code is the only implementation).
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, renamed_argument, select_blocks

ROLES = ('q', 'k', 'v')


class ParallelAttentionBranch(nn.Module):
    """``x -> s * up(tanh(down(x)))``, ``(..., C) -> (..., len(targets) * C)``.

    ``down`` keeps ``nn.Linear``'s init, ``up`` starts at zero (our choice: the branch is then
    exactly zero at initialisation; V-PETL's file leaves the init to its model's defaults).
    """

    def __init__(self, dims: int, bottleneck: int, outputs: int, scale: float):
        super().__init__()
        self.down = nn.Linear(dims, bottleneck)
        self.up = nn.Linear(bottleneck, outputs * dims)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.up(torch.tanh(self.down(x)))


@PEFT_METHODS.register_module()
class PATT(PEFTMethod):
    """``[k, v] += s * up(tanh(down(x)))`` from the attention input ``x`` (the norm1 output), a
    nonlinear branch beside the frozen qkv projection of every block. Module ``patt``
    attached to the attention module.

    Args:
        bottleneck (int): branch width. Defaults to 64 (V-PETL's training default). (Formerly
            ``mid``, still accepted.)
        scale (float): ``s``. Defaults to 0.2.
        targets (sequence of str): the adapted projections among ``q``, ``k``, ``v`` (modes
            ``patt_kv`` / ``_qv`` / ``_qk`` / ``_qkv``). Defaults to ``('k', 'v')``.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, bottleneck 32: 12 x (768 x 32 + 32 + 32 x 1536 + 1536) = 903,552 parameters.
    """
    paper = ('Yu et al., Towards a Unified View on Visual Parameter-Efficient Transfer '
             'Learning (PATT / BAPAT), arXiv 2210.00788')
    placement = 'tanh bottleneck from the attention input added to the keys and values'

    def __init__(self, bottleneck: int = 64, scale: float = 0.2,
                 targets: Sequence[str] = ('k', 'v'),
                 blocks: Optional[Sequence[int]] = None, mid: Optional[int] = None):
        super().__init__()
        bad = [t for t in targets if t not in ROLES]
        if bad or not targets or len(set(targets)) != len(targets):
            raise ValueError(f'PATT targets={list(targets)}: choose distinct roles among q, k, v')
        self.bottleneck = renamed_argument('PATT', 'mid', mid, 'bottleneck', bottleneck)
        self.scale = scale
        self.targets = tuple(t for t in ROLES if t in targets)
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'PATT blocks'):
            branch = ParallelAttentionBranch(block.dims, self.bottleneck, len(self.targets),
                                             self.scale)
            spec.add_module(block.attn, 'patt', branch)
            block.sites['qkv'].add_delta(
                lambda x, b=branch, c=block.dims: self._to_qkv(b(x), c))

    def _to_qkv(self, delta: Tensor, dims: int) -> Tensor:
        """``(..., len(targets) * C)`` -> ``(..., 3C)`` with zeros for the other roles."""
        parts = dict(zip(self.targets, delta.split(dims, dim=-1)))
        zeros = delta.new_zeros(delta.shape[:-1] + (dims, ))
        return torch.cat([parts.get(role, zeros) for role in ROLES], dim=-1)

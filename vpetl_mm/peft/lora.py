"""LoRA: a trainable low-rank update ``W + (alpha/r) B A`` of chosen linear maps.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
"""
from typing import Optional, Sequence

from vpetl_mm.models.specs.base import LINEAR_ROLES
from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks
from .layers import LowRankLinear


@PEFT_METHODS.register_module()
class LoRA(PEFTMethod):
    """Low-rank updates of the linear roles ``targets`` in every selected block.

    For a target ``y = W x + b`` the forward becomes ``y = W x + b + (alpha / r) B A x`` with
    ``A`` ``(r, C_in)`` kaiming-uniform and ``B`` ``(C_out, r)`` zero, so the backbone's output is
    unchanged at initialisation. ``q``, ``k`` and ``v`` address the row blocks of a fused ``qkv``.
    The update is linear in ``W``: :meth:`merge` adds ``(alpha / r) B A`` to the frozen weight.

    The module of target ``role`` is attached to the linear that owns the weight, as
    ``lora_<role>`` (``layers.3.attn.qkv.lora_q``).

    Args:
        rank (int): ``r``. Defaults to 8.
        alpha (float, optional): scaling numerator; ``None`` means ``alpha = r`` (scale 1, as in
            the V-PETL benchmark, which applies no scaling).
        targets (sequence of str): roles among ``qkv, q, k, v, proj, fc1, fc2``.
        dropout (float): dropout on the LoRA input.
        blocks (sequence of int, optional): global block indices; all blocks when ``None``.

    ViT-B/16, r=8 on q and v: 12 x 2 x (768 x 8 + 8 x 768) = 294,912 parameters.
    """
    placement = 'low-rank update of the linear roles in `targets` (q, v by default)'
    mergeable = True
    unmergeable = True
    paper = 'Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022'

    def __init__(self, rank: int = 8, alpha: Optional[float] = None,
                 targets: Sequence[str] = ('q', 'v'), dropout: float = 0.0,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f'LoRA rank={rank}: the rank must be >= 1')
        bad = [t for t in targets if t not in LINEAR_ROLES]
        if bad or not targets:
            raise ValueError(f'LoRA targets={list(targets)}: unknown roles {bad}; choose from '
                             f'{LINEAR_ROLES}')
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        self.targets = tuple(targets)
        self.dropout = dropout
        self.blocks = blocks
        self._entries = []  # (site, LowRankLinear): what fold() writes where

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'LoRA blocks'):
            for role in self.targets:
                site = block.sites[role]
                layer = spec.add_module(site.owner, f'lora_{role}', LowRankLinear(
                    site.in_features, site.out_features, self.rank, self.scale, self.dropout))
                site.add_low_rank(layer.term())
                self._entries.append((site, layer))

    def fold(self, sign: float = 1.0):
        for site, layer in self._entries:
            site.merge_(sign * layer.delta_weight())

    def unfold(self):
        self.fold(-1.0)

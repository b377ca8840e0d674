"""Hydra: parallel and sequential low-rank branches on the attention output projection and fc2.

Kim et al., "Hydra: Multi-head Low-rank Adaptation for Parameter Efficient Fine-tuning", 2023.
"""
from typing import Optional, Sequence

from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks


class LowRankBranch(nn.Module):
    """``x -> s * up(dropout(down(x)))`` with biases; ``down`` xavier-uniform (zero bias),
    ``up`` zero, so the branch starts at exactly zero. ``(..., C_in) -> (..., C_out)``."""

    def __init__(self, in_features: int, out_features: int, rank: int, scale: float,
                 dropout: float):
        super().__init__()
        self.scale = scale
        self.down = nn.Linear(in_features, rank)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(rank, out_features)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.dropout(self.down(x))) * self.scale

    def affine(self):
        """``(A, a)`` with ``branch(x) = A x + a`` in eval mode."""
        return (self.scale * self.up.weight @ self.down.weight,
                self.scale * (self.up.weight @ self.down.bias + self.up.bias))


class HydraBranches(nn.Module):
    """The two branches of one linear ``y = W x + b``: ``y + par(x) + seq(y)``."""

    def __init__(self, in_features, out_features, rank, scale, dropout):
        super().__init__()
        self.par = LowRankBranch(in_features, out_features, rank, scale, dropout)
        self.seq = LowRankBranch(out_features, out_features, rank, scale, dropout)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``x``: linear input ``(..., C_in)``; ``y``: its output ``(..., C_out)``."""
        return y + self.par(x) + self.seq(y)


@PEFT_METHODS.register_module()
class Hydra(PEFTMethod):
    """For ``proj`` (attention output) and ``fc2`` of every selected block:
    ``out = W x + b + par(x) + seq(W x + b)``, each branch ``s * up(dropout(down(.)))``.

    Both branches are linear, so :meth:`merge` is exact: with ``par(x) = P x + p`` and
    ``seq(y) = Q y + q``, ``W' = W + P + Q W`` and ``b' = b + p + Q b + q``. (The official
    merge reads ``mlp.fc2`` for the attention branch, a bug; here each branch folds into its own
    linear.) Modules: ``hydra`` attached to each adapted linear.

    Args:
        rank (int): branch rank. Defaults to 2.
        scale (float): ``s`` (per dataset in the authors' configs). Defaults to 1.
        dropout (float): dropout inside the branches. Defaults to 0.
        targets (sequence of str): linear roles. Defaults to ``('proj', 'fc2')``.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, rank 2: 12 x (3,842 x 3 + 8,450) = 239,712 parameters.
    """
    mergeable = True
    paper = ('Kim et al., Hydra: Multi-head Low-rank Adaptation for Parameter Efficient '
             'Fine-tuning, 2023')
    placement = 'parallel (on the input) and sequential (on the output) branches of proj and fc2'

    def __init__(self, rank: int = 2, scale: float = 1.0, dropout: float = 0.0,
                 targets: Sequence[str] = ('proj', 'fc2'),
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        bad = [t for t in targets if t not in ('qkv', 'proj', 'fc1', 'fc2')]
        if bad or not targets:
            raise ValueError(f'Hydra targets={list(targets)}: choose whole linears among qkv, '
                             f'proj, fc1, fc2 (got {bad})')
        self.rank = rank
        self.scale = scale
        self.dropout = dropout
        self.targets = tuple(targets)
        self.blocks = blocks
        self._entries = []  # (site, branches): what fold() writes where

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'Hydra blocks'):
            for role in self.targets:
                site = block.sites[role]
                branches = spec.add_module(site.owner, 'hydra', HydraBranches(
                    site.in_features, site.out_features, self.rank, self.scale, self.dropout))
                site.add_output_transform(lambda x, y, b=branches: b(x, y))
                self._entries.append((site, branches))

    def fold(self):
        for site, _ in self._entries:
            if site.bias is None:
                raise ValueError(f'cannot fold Hydra into {type(site.owner).__name__}.'
                                 f'{site.weight_name}: the linear has no bias of its own')
        for site, branches in self._entries:
            P, p = branches.par.affine()
            Q, q = branches.seq.affine()
            weight, bias = site.weight, site.bias
            site.merge_(P + Q @ weight, p + Q @ bias + q)

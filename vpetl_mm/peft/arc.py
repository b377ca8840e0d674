"""ARC and ARC_att: adapter re-composing with symmetric projections shared by all blocks.

Dong et al., "Efficient Adaptation of Large Vision Transformer via Adapter Re-Composing",
NeurIPS 2023.
"""
import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod


class ReComposedAdapter(nn.Module):
    """``h -> h + dropout(h U diag(s)) U^T + b`` for a shared ``U`` ``(C, d)``: ``(..., C)``.

    Holds the per-block rescale ``s`` ``(d,)`` and bias ``b`` ``(C,)``; ``U`` is passed in.
    """

    def __init__(self, dims: int, rank: int, dropout: float, identity_init: bool):
        super().__init__()
        self.rescale = nn.Parameter(torch.zeros(1, rank))
        if not identity_init:  # the authors' MLP side: xavier on a (1, d) tensor
            nn.init.xavier_uniform_(self.rescale)
        self.bias = nn.Parameter(torch.zeros(dims))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, u: Tensor) -> Tensor:
        return h + self.dropout(h @ (u * self.rescale)) @ u.t() + self.bias

    def as_affine(self, u: Tensor):
        """``(M, c)`` with ``adapter(h) = M h + c`` in eval mode."""
        eye = torch.eye(u.shape[0], device=u.device, dtype=u.dtype)
        return eye + (u * self.rescale) @ u.t(), self.bias


@PEFT_METHODS.register_module()
class ARC(PEFTMethod):
    """Linear adapters on the outputs of ``norm1`` (attention input) and ``norm2`` (MLP input).

    Each position (attention, MLP) has one down-projection ``U`` ``(C, d)`` shared by all blocks of
    a stage (xavier-uniform) whose transpose is the up-projection; each block has its own rescale
    ``s`` and bias ``b``. The attention rescale starts at zero (identity), the MLP one
    xavier-uniform as in the authors' code. The adapters are linear, so :meth:`merge` folds them
    into ``qkv`` and ``fc1`` exactly (where those linears have a bias of their own). On Swin the
    authors apply the MLP adapter to the residual stream before ``norm2``; here it sits after
    ``norm2`` on every backbone (a recorded deviation), with ``U`` shared per stage.

    Args:
        rank (int): ``d``. Defaults to 50.
        dropout (float): dropout on the bottleneck. Defaults to 0.1.
        positions (tuple): ``('attn', 'mlp')`` for ARC; ARC_att uses ``('attn',)``.

    ViT-B/16, d=50: ARC 96,432 parameters, ARC_att 48,216.
    """
    mergeable = True
    paper = ('Dong et al., Efficient Adaptation of Large Vision Transformer via Adapter '
             'Re-Composing (ARC), NeurIPS 2023')
    placement = ('linear adapters after norm1 / norm2 with a symmetric projection shared by all '
                 'blocks and a per-block rescale')

    def __init__(self, rank: int = 50, dropout: float = 0.1, positions=('attn', 'mlp')):
        super().__init__()
        bad = [p for p in positions if p not in ('attn', 'mlp')]
        if bad or not positions:
            raise ValueError(f'{type(self).__name__} positions={list(positions)}: choose among '
                             "'attn', 'mlp'")
        self.rank = rank
        self.dropout = dropout
        self.positions = tuple(positions)
        self.shared = nn.ParameterDict()  # '<position>_<stage>' -> U (C, d)
        self._entries = []  # (adapter, U key, site to fold into)

    def _shared(self, position: str, stage: int, dims: int, device) -> str:
        key = f'{position}_{stage}'
        if key not in self.shared:
            u = nn.Parameter(torch.empty(dims, self.rank, device=device))
            nn.init.xavier_uniform_(u)
            self.shared[key] = u
        return key

    def attach(self, backbone, spec):
        for block in spec.blocks:
            device = block.norm1.weight.device
            for position in self.positions:
                norm, site = ((block.norm1, block.sites['qkv']) if position == 'attn' else
                              (block.norm2, block.sites['fc1']))
                key = self._shared(position, block.stage, block.dims, device)
                adapter = spec.add_module(block.module, f'arc_{position}', ReComposedAdapter(
                    block.dims, self.rank, self.dropout, identity_init=position == 'attn'))
                spec.on_output(norm, lambda out, a=adapter, k=key: a(out, self.shared[k]))
                self._entries.append((adapter, key, site))

    def fold(self):
        for *_, site in self._entries:
            if site.root().bias is None:
                raise ValueError(f'cannot fold {type(self).__name__} into '
                                 f'{type(site.owner).__name__}.{site.weight_name}: the linear '
                                 'has no bias of its own')
        for adapter, key, site in self._entries:
            site.merge_input_affine_(*adapter.as_affine(self.shared[key]))


@PEFT_METHODS.register_module(name='ARC_att')
@PEFT_METHODS.register_module()
class ARCAtt(ARC):
    """ARC_att: :class:`ARC` with the attention-side adapter only."""
    placement = 'ARC on the attention input only'

    def __init__(self, rank: int = 50, dropout: float = 0.1):
        super().__init__(rank, dropout, positions=('attn', ))

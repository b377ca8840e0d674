"""RepAdapter: linear group-wise adapters before attention and MLP, folded into the next linear.

Luo et al., "Towards Efficient Visual Adaption via Structural Re-parameterization", 2023.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks


class GroupLinearAdapter(nn.Module):
    """``x -> x + s * B(dropout(A x + a)) + s * b``: ``(..., C) -> (..., C)``, no activation.

    ``A`` ``(d, C)`` xavier-uniform with a zero bias; ``B`` is a group-wise ``d -> C`` map
    (``groups`` blocks of ``(C/g, d/g)``, the authors' grouped 1x1 convolution) starting at zero, so
    the adapter is the identity at initialisation.
    """

    def __init__(self, dims: int, bottleneck: int, groups: int, scale: float, dropout: float):
        super().__init__()
        if bottleneck % groups or dims % groups:
            raise ValueError(f'RepAdapter: bottleneck {bottleneck} and width {dims} must be '
                             f'divisible by groups={groups}')
        self.groups = groups
        self.scale = scale
        self.down = nn.Linear(dims, bottleneck)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        self.dropout = nn.Dropout(dropout)
        self.up_weight = nn.Parameter(torch.zeros(groups, dims // groups, bottleneck // groups))
        self.up_bias = nn.Parameter(torch.zeros(dims))

    def up(self, h: Tensor) -> Tensor:
        """``h`` ``(..., d)`` -> ``(..., C)`` through the group-wise map."""
        h = h.unflatten(-1, (self.groups, -1))                      # (..., g, d/g)
        out = torch.einsum('...gi,goi->...go', h, self.up_weight)   # (..., g, C/g)
        return out.flatten(-2) + self.up_bias

    def forward(self, x: Tensor) -> Tensor:
        return x + self.scale * self.up(self.dropout(self.down(x)))

    def dense_up(self) -> Tensor:
        """The ``(C, d)`` block-diagonal matrix of the group-wise map."""
        return torch.block_diag(*self.up_weight)

    def as_affine(self):
        """``(M, c)`` with ``adapter(x) = M x + c`` (eval mode: dropout is the identity)."""
        eye = torch.eye(self.down.in_features, device=self.up_bias.device)
        up = self.dense_up()
        return (eye + self.scale * up @ self.down.weight,
                self.scale * (up @ self.down.bias + self.up_bias))


@PEFT_METHODS.register_module()
class RepAdapter(PEFTMethod):
    """A linear adapter on the output of ``norm1`` (input of the attention) and of ``norm2`` (input
    of the MLP) of every selected block; ``y = x + s * B(dropout(A x))`` with biases.

    The adapter is affine, so :meth:`merge` folds it into the next linear exactly (eval mode):
    ``qkv.W <- qkv.W M``, ``qkv.b <- qkv.W c + qkv.b`` with ``adapter(x) = M x + c``, and likewise
    for ``fc1``. Exact where the norm output reaches the linear unchanged (ViTs); on Swin with
    inputs that need window padding the zero padding tokens would see the folded offset, so merge
    there only for inputs whose grid divides by the window. The mmaction ViT's fused qkv has no
    bias of its own to take the offset: merge raises there.

    Modules: ``repadapter_attn`` and ``repadapter_mlp`` attached to each block.

    Args:
        bottleneck (int): ``d``. Defaults to 8.
        groups (int): groups of the up map. Defaults to 2.
        scale (float): ``s`` (per dataset in the authors' configs). Defaults to 1.
        dropout (float): dropout on the bottleneck. Defaults to 0.1.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16 (d=8, g=2): 24 x (6,152 + 3,840) = 239,808 parameters.
    """
    mergeable = True
    paper = ('Luo et al., Towards Efficient Visual Adaption via Structural '
             'Re-parameterization (RepAdapter), 2023')
    placement = ('linear adapter on the inputs of attention and MLP (after norm1 / norm2), '
                 'folded into qkv / fc1')

    def __init__(self, bottleneck: int = 8, groups: int = 2, scale: float = 1.0,
                 dropout: float = 0.1, blocks: Optional[Sequence[int]] = None):
        super().__init__()
        self.bottleneck = bottleneck
        self.groups = groups
        self.scale = scale
        self.dropout = dropout
        self.blocks = blocks
        self._entries = []  # (adapter, site to fold into)

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'RepAdapter blocks'):
            for norm, site, name in ((block.norm1, block.sites['qkv'], 'repadapter_attn'),
                                     (block.norm2, block.sites['fc1'], 'repadapter_mlp')):
                adapter = spec.add_module(block.module, name, GroupLinearAdapter(
                    block.dims, self.bottleneck, self.groups, self.scale, self.dropout))
                spec.on_output(norm, adapter)
                self._entries.append((adapter, site))

    def fold(self):
        for _, site in self._entries:
            if site.root().bias is None:
                raise ValueError(f'cannot fold RepAdapter into {type(site.owner).__name__}.'
                                 f'{site.weight_name}: the linear has no bias of its own')
        for adapter, site in self._entries:
            site.merge_input_affine_(*adapter.as_affine())

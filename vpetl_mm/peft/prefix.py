"""Prefix tuning: learned key / value prefixes in every attention layer.

Li and Liang, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", ACL 2021, in the
vision form of the V-PETL benchmark's video code (``WindowAttention3D``, mode ``prefix_qk``).
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks


class PrefixGenerator(nn.Module):
    """``length`` prefix keys and values from a reparameterisation:
    ``[P_k, P_v] = up(tanh(down(E)))`` with learned embeddings ``E`` ``(L, C)``; ``down``
    ``C -> mid``, ``up`` ``mid -> 2C`` (V-PETL's ``wte`` + ``control_trans``)."""

    def __init__(self, dims: int, length: int, mid: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(length, dims))
        self.down = nn.Linear(dims, mid)
        self.up = nn.Linear(mid, 2 * dims)

    def forward(self, k: Tensor, v: Tensor):
        """``k``, ``v``: ``(B, heads, N, d)`` -> each with the ``L`` prefix tokens first."""
        b, heads, _, d = k.shape
        prefix = self.up(torch.tanh(self.down(self.embedding)))  # (L, 2C)
        pk, pv = prefix.to(k.dtype).reshape(-1, 2, heads, d).permute(1, 2, 0, 3)
        return (torch.cat([pk.expand(b, -1, -1, -1), k], dim=2),
                torch.cat([pv.expand(b, -1, -1, -1), v], dim=2))


@PEFT_METHODS.register_module()
class PrefixTuning(PEFTMethod):
    """``L`` learned key / value tokens prepended inside every attention layer (the queries stay
    the image tokens, so the sequence length and every output shape are unchanged). Module
    ``prefix`` attached to each attention module.

    Where the spec gives access to the keys and values: mmpretrain's, mmseg's and mmaction's
    plain ViTs, and the 2-D Swins of mmpretrain / mmseg / mmdet (prefixes in every window, the
    relative-position bias and the shift mask padded for them); Video Swin is refused. The embedding init (N(0, 1)) and the default sizes are ours: the benchmark's code
    leaves them to its command lines.

    Args:
        length (int): prefix tokens ``L`` per layer. Defaults to 10.
        mid (int): width of the reparameterisation MLP. Defaults to 64.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, L=10, mid 64: 12 x (10 x 768 + 768 x 64 + 64 + 64 x 1536 + 1536) = 1,880,832
    parameters.
    """
    paper = ('Li and Liang, Prefix-Tuning: Optimizing Continuous Prompts for Generation, '
             'ACL 2021')
    placement = 'learned key / value prefixes in every attention layer'

    def __init__(self, length: int = 10, mid: int = 64,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if length < 1 or mid < 1:
            raise ValueError(f'PrefixTuning length and mid must be >= 1, got {length}, {mid}')
        self.length = length
        self.mid = mid
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'PrefixTuning blocks'):
            generator = PrefixGenerator(block.dims, self.length, self.mid)
            spec.on_attention_kv(block, generator)
            block.attn.add_module('prefix', generator.to(block.norm1.weight.device))

"""Prefix tuning: learned key / value prefixes in every attention layer.

Li and Liang, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", ACL 2021: ``L``
learned keys / values concatenated to every attention's own. V-PETL's Video-Swin code
(``WindowAttention3D``, modes ``prefix_kv`` / ``prefix_qk``) has the same reparameterisation but
reads as internally inconsistent (an ``N x N`` position bias added to ``N x (N + L)`` logits);
here the prefixes follow the paper (no position bias, never masked).
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, renamed_argument, select_blocks


class PrefixGenerator(nn.Module):
    """``length`` prefix keys and values from a reparameterisation:
    ``[P_k, P_v] = up(tanh(down(E)))`` with learned embeddings ``E`` ``(L, C)``; ``down``
    ``C -> bottleneck``, ``up`` ``bottleneck -> 2C`` (V-PETL's ``wte`` + ``control_trans``)."""

    def __init__(self, dims: int, length: int, bottleneck: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(length, dims))
        self.down = nn.Linear(dims, bottleneck)
        self.up = nn.Linear(bottleneck, 2 * dims)

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
    plain ViTs, the 2-D Swins of mmpretrain / mmseg / mmdet and mmaction's Video Swin (the same
    prefixes in every window of a block, the relative-position bias and the shift mask padded
    with zero columns for them). The embedding init (N(0, 1)) and the default sizes are ours:
    the benchmark's code leaves them to its command lines.

    Args:
        length (int): prefix tokens ``L`` per layer. Defaults to 10.
        bottleneck (int): width of the reparameterisation MLP. Defaults to 64. (Formerly
            ``mid``, still accepted.)
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, L=10, bottleneck 64: 12 x (10 x 768 + 768 x 64 + 64 + 64 x 1536 + 1536) = 1,880,832
    parameters. Video Swin-B (24 blocks, widths summing to 12,032) has
    ``12,032 (L + 3 b + 2) + 24 b`` (b the bottleneck): 2,456,064 at L=10, b=64; V-PETL's 6.37M
    is met at L=20 (its ``att_preseqlen``) only with bottleneck 169 (6,368,984; 128: 4,888,064, 512:
    18,758,144).
    """
    paper = ('Li and Liang, Prefix-Tuning: Optimizing Continuous Prompts for Generation, '
             'ACL 2021')
    placement = 'learned key / value prefixes in every attention layer'

    def __init__(self, length: int = 10, bottleneck: int = 64,
                 blocks: Optional[Sequence[int]] = None, mid: Optional[int] = None):
        super().__init__()
        bottleneck = renamed_argument('PrefixTuning', 'mid', mid, 'bottleneck', bottleneck)
        if length < 1 or bottleneck < 1:
            raise ValueError(f'PrefixTuning length and bottleneck must be >= 1, got {length}, '
                             f'{bottleneck}')
        self.length = length
        self.bottleneck = bottleneck
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'PrefixTuning blocks'):
            generator = PrefixGenerator(block.dims, self.length, self.bottleneck)
            spec.on_attention_kv(block, generator)
            spec.add_module(block.attn, 'prefix', generator)

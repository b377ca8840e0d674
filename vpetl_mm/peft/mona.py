"""Mona: multi-cognitive visual adapters.

Yin et al., "5%>100%: Breaking Performance Shackles of Full Fine-Tuning on Visual Recognition
Tasks" (Mona), CVPR 2025.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks


class MultiScaleConv(nn.Module):
    """``z -> y + P(y)``, ``y = (DW3(z) + DW5(z) + DW7(z)) / 3 + z`` on ``(B, c, H, W)``:
    depthwise 3/5/7 convolutions (with bias) averaged, then a 1x1 projector, both residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels) for k in (3, 5, 7))
        self.projector = nn.Conv2d(channels, channels, 1)

    def forward(self, z: Tensor) -> Tensor:
        y = sum(conv(z) for conv in self.convs) / 3.0 + z
        return y + self.projector(y)


class MonaAdapter(nn.Module):
    """``x -> x + up(Drop(GELU(MSConv(down(s1 * LN(x) + s2 * x)))))`` on ``(B, N, C)`` tokens.

    ``s1`` starts at 1e-6 and ``s2`` at 1 (the scaled-LayerNorm input), the projections are
    truncated-normal (std 0.02) with zero biases, the convolutions keep PyTorch's init (as the
    authors' code). The multi-scale convolution sees the grid tokens reshaped to
    ``(B, c, H, W)``; prefix tokens (cls) pass it unchanged.
    """

    def __init__(self, dims: int, bottleneck: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dims)
        self.gamma = nn.Parameter(torch.full((dims, ), 1e-6))
        self.gammax = nn.Parameter(torch.ones(dims))
        self.down = nn.Linear(dims, bottleneck)
        self.conv = MultiScaleConv(bottleneck)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dims)
        for linear in (self.down, self.up):
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor, layout) -> Tensor:
        z = self.down(self.norm(x) * self.gamma + x * self.gammax)
        p, (h, w) = layout.num_prefix, layout.grid
        grid = z[:, p:].transpose(1, 2).reshape(z.shape[0], -1, h, w)
        grid = self.conv(grid).flatten(2).transpose(1, 2)
        z = torch.cat([z[:, :p], grid], dim=1)
        return x + self.up(self.dropout(F.gelu(z)))


@PEFT_METHODS.register_module()
class Mona(PEFTMethod):
    """Two Mona adapters per block on the residual stream: after the attention residual
    (``h <- Mona1(x + attn)``, which feeds ``norm2`` and the MLP's skip) and after the block
    (``y <- Mona2(h + mlp)``). Modules ``mona_attn`` / ``mona_mlp`` attached to each block.

    On Swin (the authors' home) every block of every stage gets them; on plain ViTs the patch
    tokens are reshaped to their grid for the convolutions and the prefix tokens pass them.
    Video backbones (3-D grids) are refused: the convolutions are 2-D.

    Args:
        bottleneck (int): adapter width, the same at every stage. Defaults to 64.
        dropout (float): dropout before the up projection. Defaults to 0.1.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    Swin-B: 3,667,456 parameters (133 C + 9,728 per adapter, two per block).
    """
    paper = ('Yin et al., 5%>100%: Breaking Performance Shackles of Full Fine-Tuning on Visual '
             'Recognition Tasks (Mona), CVPR 2025')
    placement = ('two adapters with a scaled LayerNorm and multi-scale depthwise convolutions, '
                 'after the attention residual and after the block')

    def __init__(self, bottleneck: int = 64, dropout: float = 0.1,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        self.bottleneck = bottleneck
        self.dropout = dropout
        self.blocks = blocks

    def attach(self, backbone, spec):
        if spec.grid_rank != 2:
            raise TypeError(f'Mona convolves a 2-D token grid; {type(spec).__name__} has '
                            f'{spec.grid_rank}-D grids')
        for block in select_blocks(spec, self.blocks, 'Mona blocks'):
            device = block.norm2.weight.device
            first = MonaAdapter(block.dims, self.bottleneck, self.dropout).to(device)
            second = MonaAdapter(block.dims, self.bottleneck, self.dropout).to(device)
            block.module.add_module('mona_attn', first)
            block.module.add_module('mona_mlp', second)
            spec.on_attention_residual(block, first)
            spec.on_block_output(block, second)

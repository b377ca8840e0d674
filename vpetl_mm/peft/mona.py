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
from .layers import conv_frames


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
    ``(B, c, H, W)``, or on a video grid ``(T, H, W)`` each frame as ``(B * T, c, H, W)``
    (:func:`conv_frames`); prefix tokens (cls) pass it unchanged.
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
        z = conv_frames(self.conv, z, layout)
        return x + self.up(self.dropout(F.gelu(z)))


@PEFT_METHODS.register_module()
class Mona(PEFTMethod):
    """Two Mona adapters per block on the residual stream: after the attention residual
    (``h <- Mona1(x + attn)``, which feeds ``norm2`` and the MLP's skip) and after the block
    (``y <- Mona2(h + mlp)``). Modules ``mona_attn`` / ``mona_mlp`` attached to each block.

    On Swin (the authors' home) every block of every stage gets them; on plain ViTs the patch
    tokens are reshaped to their grid for the convolutions and the prefix tokens pass them.

    Video backbones (``(T, H, W)`` grids: mmaction's ViT / VideoMAE and Video Swin) get the
    published 2-D operator on each frame's ``H x W`` grid; temporal mixing stays with the
    attention. Why per frame and not 3-D depthwise ``k x k x k`` convolutions: it keeps the
    published formula and parameter count exactly (image-trained adapters load as they are, the
    image configs' counts carry over), whereas 3-D kernels would add a temporal mixing the paper
    never tested, multiply the convolutions' weights by ``k`` (7 x 7 x 7 taps), and on the short
    token time axis (frames / 2 after the tubelet or patch stride: 8 for VideoMAE's 16 frames)
    a 5- or 7-tap temporal kernel would largely read zero padding. On Video Swin the adapters sit
    where they sit on the 2-D Swin: on the un-windowed ``(B, D, H, W, C)`` stream that feeds
    ``norm2`` and the block output.

    Args:
        bottleneck (int): adapter width, the same at every stage. Defaults to 64.
        dropout (float): dropout before the up projection. Defaults to 0.1.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    Swin-B: 3,667,456 parameters (133 C + 9,728 per adapter, two per block); the same on
    Video Swin-B, and 2,684,928 on ViT-B (image or VideoMAE).
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
        if spec.grid_rank not in (2, 3):
            raise TypeError(f'Mona convolves each (H, W) frame of a 2-D or 3-D (T, H, W) token '
                            f'grid; {type(spec).__name__} has {spec.grid_rank}-D grids')
        for block in select_blocks(spec, self.blocks, 'Mona blocks'):
            first, second = (spec.add_module(block.module, name, MonaAdapter(
                block.dims, self.bottleneck, self.dropout)) for name in ('mona_attn', 'mona_mlp'))
            spec.on_attention_residual(block, first)
            spec.on_block_output(block, second)

"""Adapter+: a post-block adapter with channel-wise scaling.

Steitz and Roth, "Adapters Strike Back", CVPR 2024.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks
from .layers import DropPath


class ScaledAdapter(nn.Module):
    """``y -> s * DropPath(up(GELU(down(y))))``, ``(..., C) -> (..., C)``.

    ``down`` and ``up`` use the Houlsby init of the authors' code (truncated normal, std 0.01,
    bounds +-0.02, zero biases); ``s`` is a per-channel scaling initialised to ones.
    """

    def __init__(self, dims: int, bottleneck: int, drop_path: float):
        super().__init__()
        self.down = nn.Linear(dims, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dims)
        for linear in (self.down, self.up):
            nn.init.trunc_normal_(linear.weight, std=0.01, a=-0.02, b=0.02)
            nn.init.zeros_(linear.bias)
        self.scaling = nn.Parameter(torch.ones(dims))
        self.drop_path = DropPath(drop_path)

    def forward(self, y: Tensor) -> Tensor:
        return self.scaling * self.drop_path(self.up(self.act(self.down(y))))


@PEFT_METHODS.register_module(name='Adapter+')
@PEFT_METHODS.register_module()
class AdapterPlus(PEFTMethod):
    """``y <- y + s * DropPath(up(GELU(down(y))))`` on the output ``y`` of every selected block
    (the "post" placement: after the complete block, skip and input are the same tensor).

    Modules: ``adapter_plus`` attached to each block.

    Args:
        bottleneck (int): adapter width ``r`` (per dataset in the authors' VTAB configs).
        drop_path (float): drop-path on the adapter branch. Defaults to 0.1.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16: 12 x (1,537 r + 1,536) parameters (r=8: 165,984).
    """
    paper = 'Steitz and Roth, Adapters Strike Back, CVPR 2024'
    placement = 'bottleneck after the whole block with channel-wise scaling (post placement)'

    def __init__(self, bottleneck: int = 8, drop_path: float = 0.1,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        self.bottleneck = bottleneck
        self.drop_path = drop_path
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'Adapter+ blocks'):
            adapter = spec.add_module(block.module, 'adapter_plus', ScaledAdapter(
                block.dims, self.bottleneck, self.drop_path))
            spec.on_block_output(block, lambda y, layout, a=adapter: y + a(y))

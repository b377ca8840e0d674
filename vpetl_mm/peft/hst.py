"""HST: hierarchical side-tuning.

Lin et al., "Hierarchical Side-Tuning for Vision Transformers", arXiv 2310.05393.
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod
from .layers import DropPath


class SideBlock(nn.Module):
    """``x += DropPath(CrossAttn(LN(x), [g, mean(f)])); x += f; x += DropPath(MLP(LN(x)))`` on
    side tokens ``x`` ``(B, L, d)`` with the bridged meta token ``g`` ``(B, 1, d)`` and the
    bridged backbone map ``f`` ``(B, L, d)``: the attention has two key / value tokens."""

    def __init__(self, dims: int, num_heads: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims)
        self.attn = nn.MultiheadAttention(dims, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dims)
        self.mlp = nn.Sequential(nn.Linear(dims, 4 * dims), nn.GELU(), nn.Linear(4 * dims, dims))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, g: Tensor, f: Tensor) -> Tensor:
        kv = torch.cat([g, f.mean(1, keepdim=True)], dim=1)
        x = x + self.drop_path(self.attn(self.norm1(x), kv, kv, need_weights=False)[0])
        x = x + f
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stem(nn.Module):
    """Image ``(B, 3, H, W)`` -> tokens ``(B, H/4 * W/4, d)`` and their grid: conv 3x3 s2 (no
    bias), BN, ReLU, conv 2x2 s2, LayerNorm."""

    def __init__(self, dims: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, dims, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(dims)
        self.conv2 = nn.Conv2d(dims, dims, 2, stride=2)
        self.norm = nn.LayerNorm(dims)

    def forward(self, image: Tensor):
        x = self.conv2(F.relu(self.bn(self.conv1(image))))
        return self.norm(x.flatten(2).transpose(1, 2)), x.shape[-2:]


class Downsample(nn.Module):
    """Tokens ``(B, H*W, c)`` on ``(H, W)`` -> ``(B, H/2 * W/2, d)``: conv 3x3 s2, LayerNorm."""

    def __init__(self, in_dims: int, dims: int):
        super().__init__()
        self.conv = nn.Conv2d(in_dims, dims, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dims)

    def forward(self, x: Tensor, grid):
        x = self.conv(x.transpose(1, 2).reshape(x.shape[0], -1, *grid))
        return self.norm(x.flatten(2).transpose(1, 2)), x.shape[-2:]


@PEFT_METHODS.register_module()
class HST(PEFTMethod):
    """A learnable meta token enters every frozen block; a 4-stage pyramid side network on the
    image reads each block's meta-token output and patch map through a per-stage linear bridge
    and produces the features: the backbone's output becomes the pooled side feature
    ``BN(mean(LN(x_4)))`` ``(B, d_4)`` (a non-affine BatchNorm), for a classification head with
    ``in_channels = dims[-1]``.

    Blocks are split evenly over the stages (ViT-B: 3 per stage, the authors' ``block_indices``
    2/5/8/11); side block ``j`` of a stage reads the stage's ``j``-th backbone block. The maps are
    resized bilinearly to the stage's grid. The frozen blocks' LayerNorms are trained too (as the
    authors' ``freeze_vit``), so the backward pass goes through the backbone (no memory saving,
    as in the released code). Plain 2-D ViTs with a classification head only.

    Modules: ``peft.<name>.*`` (``meta_tokens``, ``stem``, ``downsamples``, ``bridges``,
    ``meta_norms``, ``blocks``, ``stage_norms``, ``pool_norm``).

    Args:
        dims (sequence of int): side widths per stage. Defaults to (32, 48, 64, 72).
        num_heads (sequence of int): side heads per stage. Defaults to (2, 4, 8, 12).
        drop_path (float): side drop-path. Defaults to 0.

    ViT-B/16: 764,840 parameters (the paper's 0.78M with a 100-class head).
    """
    paper = 'Lin et al., Hierarchical Side-Tuning for Vision Transformers, arXiv 2310.05393'
    placement = ('meta token in every block; pyramid side network on the image, bridged to each '
                 'block; replaces the backbone output')

    def __init__(self, dims: Sequence[int] = (32, 48, 64, 72),
                 num_heads: Sequence[int] = (2, 4, 8, 12), drop_path: float = 0.0):
        super().__init__()
        if len(dims) != len(num_heads):
            raise ValueError(f'HST dims={list(dims)} and num_heads={list(num_heads)} differ in '
                             'length')
        self.dims = tuple(dims)
        self.num_heads = tuple(num_heads)
        self.drop_path = drop_path
        self._image: Optional[Tensor] = None
        self._x: Optional[Tensor] = None
        self._grid = None
        self._prefix = 0

    def attach(self, backbone, spec):
        if not spec.accepts_extra_tokens or spec.grid_rank != 2:
            raise TypeError(f'HST inserts meta tokens and reads 2-D maps; {type(spec).__name__} '
                            'is not a plain image ViT')
        blocks = spec.blocks
        stages = len(self.dims)
        if len(blocks) % stages:
            raise ValueError(f'HST: {len(blocks)} blocks do not split into {stages} stages')
        width = blocks[0].dims
        per_stage = len(blocks) // stages
        self.meta_tokens = nn.Parameter(torch.empty(len(blocks), 1, width))
        nn.init.xavier_uniform_(self.meta_tokens.view(len(blocks), width))
        self.stem = Stem(self.dims[0])
        self.downsamples = nn.ModuleList(
            Downsample(a, b) for a, b in zip(self.dims[:-1], self.dims[1:]))
        self.bridges = nn.ModuleList(nn.Linear(width, d) for d in self.dims)
        self.meta_norms = nn.ModuleList(nn.LayerNorm(self.dims[i // per_stage])
                                        for i in range(len(blocks)))
        self.blocks = nn.ModuleList(
            SideBlock(self.dims[i // per_stage], self.num_heads[i // per_stage], self.drop_path)
            for i in range(len(blocks)))
        self.stage_norms = nn.ModuleList(nn.LayerNorm(d) for d in self.dims)
        self.pool_norm = nn.BatchNorm1d(self.dims[-1], affine=False)
        for module in self.modules():  # the authors' init: Linears (their attention's q / k /
            # v included) trunc-normal 0.02 with zero biases, convs N(0, 2 / fan_out)
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.MultiheadAttention):
                nn.init.trunc_normal_(module.in_proj_weight, std=0.02)
                nn.init.zeros_(module.in_proj_bias)
            elif isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, std=math.sqrt(2.0 / (fan_out // module.groups)))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.to(blocks[0].norm1.weight.device)
        for block in blocks:  # the authors train the frozen blocks' LayerNorms too
            for p in (*block.norm1.parameters(), *block.norm2.parameters()):
                spec.tune(p)
        self._per_stage = per_stage
        self._last = blocks[-1].index
        spec.on_input(backbone, self._remember)
        for i, block in enumerate(blocks):
            spec.replace_block_input(block, lambda t, layout, i=i: self._insert(t, layout, i))
            spec.on_block_output(block, lambda t, layout, i=i: self._side_step(t, i))
        spec.on_output(backbone, lambda out: (self._pooled(), ))

    def begin_forward(self):
        self._x = None

    def _remember(self, image: Tensor):
        self._image = image

    def _insert(self, tokens: Tensor, layout, index: int) -> Tensor:
        self._prefix, self._block_grid = layout.num_prefix, layout.grid
        p = self._prefix
        meta = self.meta_tokens[index].to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        return torch.cat([tokens[:, :p], meta, tokens[:, p:]], dim=1)

    def _side_step(self, tokens: Tensor, index: int) -> Tensor:
        """Strip the meta token from block ``index``'s output, run side block ``index``."""
        p = self._prefix
        meta, patches = tokens[:, p:p + 1], tokens[:, p + 1:]
        stage, j = divmod(index, self._per_stage)
        if j == 0:  # a new stage: its input tokens
            if stage == 0:
                self._x, self._grid = self.stem(self._image)
            else:
                x = self.stage_norms[stage - 1](self._x)
                self._x, self._grid = self.downsamples[stage - 1](x, self._grid)
        bridge = self.bridges[stage]
        g = self.meta_norms[index](bridge(meta))
        f = bridge(patches).transpose(1, 2).reshape(patches.shape[0], -1, *self._block_grid)
        f = F.interpolate(f, size=tuple(self._grid), mode='bilinear', align_corners=False)
        self._x = self.blocks[index](self._x, g, f.flatten(2).transpose(1, 2))
        return torch.cat([tokens[:, :p], patches], dim=1)

    def _pooled(self) -> Tensor:
        """``(B, d_4)``: the last stage's tokens normed, averaged, batch-normed."""
        return self.pool_norm(self.stage_norms[-1](self._x).mean(1))

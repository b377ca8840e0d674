"""DTL and DTL+: disentangled transfer learning with a compact side network.

Fu, Zhu and Wu, "DTL: Disentangled Transfer Learning for Visual Recognition", AAAI 2024.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks
from .layers import LowRankLinear, conv_frames


def swish(x: Tensor, beta: float) -> Tensor:
    """``x * sigmoid(beta * x)``."""
    return x * torch.sigmoid(beta * x)


@PEFT_METHODS.register_module()
class DTL(PEFTMethod):
    """A low-rank side network beside the frozen backbone, added back into late blocks.

    With ``x_j`` the input of block ``j``, the side state accumulates
    ``R = sum_{j <= i, j in side_blocks} B_j A_j x_j`` (``A_j`` ``(r, C)`` kaiming, ``B_j``
    ``(C, r)`` zero, no bias, one pair per block), and after each block ``i`` in ``add_blocks`` the
    backbone stream becomes ``x <- x + swish(R, beta)``. ``R`` is never reset within a stage; on
    hierarchical backbones (Swin) it restarts at zero in every stage, since the width changes,
    so side maps in a stage without a later add-back block are not created.

    DTL+ (``kernel_size > 0``) passes ``swish(R)`` through a depthwise ``k x k`` convolution (no
    bias) over the patch-token grid before adding it; prefix tokens (cls) bypass the convolution.
    There is one convolution per stage, shared by that stage's add-back blocks. On video grids
    ``(T, H, W)`` (mmaction's ViT / VideoMAE, Video Swin) the same ``k x k`` convolution runs on
    each frame's ``H x W`` grid, frames apart: this keeps the published operator and its
    ``C k^2`` parameters (image-trained weights and counts carry over), and leaves temporal
    mixing to the attention, where a ``k x k x k`` kernel would add a temporal fusion the paper
    never tested and ``k`` times the weights.

    Memory: no frozen block before the first add-back block receives an input that needs a
    gradient, so autograd keeps no activations inside them; only the side maps' inputs are kept.

    The authors' head pools the patch tokens, then applies the final norm and the classifier; the
    VTAB configs select it with the backbone's ``out_type='avg_featmap', final_norm=False``.

    Args:
        rank (int): ``r`` of each side map. Defaults to 2 (ViT-B VTAB).
        beta (float): swish sharpness. Defaults to 100.
        side_blocks (sequence of int, optional): blocks with a side map; all when ``None``.
        add_blocks (sequence of int, optional): blocks after which ``swish(R)`` is added; the
            second half of the blocks when ``None`` (blocks 6..11 on ViT-B, as published).
        kernel_size (int): DTL+ convolution size; 0 for plain DTL.

    ViT-B/16, r=2: 12 x (2 x 768 + 768 x 2) = 36,864 parameters (DTL+ adds 768 k^2); the same
    on the VideoMAE ViT-B.
    """
    placement = 'side network: low-rank maps of every block input, added back after the late blocks'
    paper = ('Fu, Zhu and Wu, DTL: Disentangled Transfer Learning for Visual Recognition, '
             'AAAI 2024')

    def __init__(self, rank: int = 2, beta: float = 100.0,
                 side_blocks: Optional[Sequence[int]] = None,
                 add_blocks: Optional[Sequence[int]] = None, kernel_size: int = 0):
        super().__init__()
        if kernel_size < 0:
            raise ValueError(f'kernel_size must be >= 0, got {kernel_size}')
        self.rank = rank
        self.beta = beta
        self.side_blocks = side_blocks
        self.add_blocks = add_blocks
        self.kernel_size = kernel_size
        self.side = nn.ModuleDict()
        self.fusion = nn.ModuleDict()
        self._state: Optional[Tensor] = None
        self._state_stage = -1

    def attach(self, backbone, spec):
        if self.kernel_size and spec.grid_rank not in (2, 3):
            raise ValueError(f'{type(self).__name__}: the kernel_size={self.kernel_size} fusion '
                             'convolution runs on each (H, W) frame of a 2-D or 3-D (T, H, W) '
                             f'token grid; {type(spec).__name__} has {spec.grid_rank}-D grids. '
                             'Use DTL (kernel_size=0).')
        n = len(spec.blocks)
        add_blocks = self.add_blocks if self.add_blocks is not None else range(n // 2, n)
        device = spec.blocks[0].norm1.weight.device
        adds = select_blocks(spec, list(add_blocks), 'DTL add_blocks')
        for block in select_blocks(spec, self.side_blocks, 'DTL side_blocks'):
            if not any(a.stage == block.stage and a.index >= block.index for a in adds):
                # its output could never be added back (the state restarts every stage):
                # a parameter without gradient would only break DDP
                continue
            side = LowRankLinear(block.dims, block.dims, self.rank).to(device)
            self.side[str(block.index)] = side
            spec.on_block_input(block, lambda x, layout, b=block, s=side: self._accumulate(
                x, b, s))
        for block in adds:
            if self.kernel_size and str(block.stage) not in self.fusion:
                self.fusion[str(block.stage)] = nn.Conv2d(
                    block.dims, block.dims, self.kernel_size, padding='same',
                    groups=block.dims, bias=False).to(device)
            spec.on_block_output(block, lambda y, layout, b=block: self._add_back(y, layout, b))

    def begin_forward(self):
        self._state = None
        self._state_stage = -1

    def _accumulate(self, x: Tensor, block, side: LowRankLinear) -> None:
        """``x``: block input ``(B, N, C)``; adds ``B_j A_j x`` to the side state."""
        if block.stage != self._state_stage:
            self._state, self._state_stage = None, block.stage
        out = side(x)
        self._state = out if self._state is None else self._state + out

    def _add_back(self, y: Tensor, layout, block) -> Tensor:
        """``y``: block output ``(B, N, C)`` -> ``y + fusion(swish(R))``."""
        if self._state is None or self._state_stage != block.stage:
            return y  # no side map has run in this stage yet: R = 0 and swish(0) = 0
        s = swish(self._state, self.beta)
        if self.kernel_size:
            s = self._fuse(s, layout, self.fusion[str(block.stage)])
        return y + s

    @staticmethod
    def _fuse(s: Tensor, layout, conv: nn.Conv2d) -> Tensor:
        """Depthwise-convolve the grid tokens of ``s`` ``(B, N, C)``, frame by frame on a
        ``(T, H, W)`` grid; prefix tokens pass."""
        return conv_frames(conv, s, layout)


@PEFT_METHODS.register_module(name='DTL+')
@PEFT_METHODS.register_module()
class DTLPlus(DTL):
    """DTL+ : :class:`DTL` with the depthwise fusion convolution (``kernel_size`` >= 1)."""
    placement = 'DTL side network plus a depthwise conv over the patch grid of its output'

    def __init__(self, kernel_size: int = 3, **kwargs):
        if kernel_size < 1:
            raise ValueError(f'DTL+ needs kernel_size >= 1, got {kernel_size}; use DTL for 0')
        super().__init__(kernel_size=kernel_size, **kwargs)

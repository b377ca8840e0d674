"""SNF: shortcut adaptation via normalizing flow.

Wang et al., "Adapting Shortcut With Normalizing Flow: An Efficient Tuning Framework for Visual
Recognition", CVPR 2023.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks


class NormalizingFlow(nn.Module):
    """``z = mu + exp(log_sigma) * x``, then ``length`` planar steps
    ``z <- z + s * tanh(z . w + b)``, ``(..., C) -> (..., C)``.

    ``mu`` and ``log_sigma`` start at zero (identity), the planar ``w``, ``s`` (``(L, C)``) and
    ``b`` (``(L,)``) uniform in +-0.01 (near identity), as the authors' ``flow.py``. With
    ``recompute`` the ``L`` intermediate ``(..., C)`` tensors are recomputed in backward instead
    of kept (activation checkpointing: the same values and gradients, about ``1 / L`` of the
    flow's activation memory, one more flow pass per step).
    """

    def __init__(self, dims: int, length: int, recompute: bool = True):
        super().__init__()
        self.recompute = recompute
        self.mu = nn.Parameter(torch.zeros(dims))
        self.log_sigma = nn.Parameter(torch.zeros(dims))
        self.w = nn.Parameter(torch.empty(length, dims).uniform_(-0.01, 0.01))
        self.s = nn.Parameter(torch.empty(length, dims).uniform_(-0.01, 0.01))
        self.b = nn.Parameter(torch.empty(length).uniform_(-0.01, 0.01))

    def forward(self, x: Tensor) -> Tensor:
        if self.recompute and torch.is_grad_enabled() and (x.requires_grad
                                                           or self.mu.requires_grad):
            # autograd would keep every step's (..., C) input; recompute them in backward
            return checkpoint(self.flow, x, use_reentrant=False)
        return self.flow(x)

    def flow(self, x: Tensor) -> Tensor:
        z = self.mu + torch.exp(self.log_sigma) * x
        for w, s, b in zip(self.w, self.s, self.b):
            z = z + s * torch.tanh(z @ w + b).unsqueeze(-1)
        return z


@PEFT_METHODS.register_module()
class SNF(PEFTMethod):
    """Both shortcuts of every block pass a normalizing flow:
    ``h = flow1(x) + DropPath(Attn(LN1 x))`` and ``y = flow2(h) + DropPath(MLP(LN2 h))``.

    Implemented on the spec's residual hooks: the attention residual ``x + attn`` gets
    ``flow1(x) - x`` added (it feeds ``norm2`` and the MLP's skip), the block output
    ``flow2(h) - h``. Modules ``snf_attn`` / ``snf_mlp`` attached to each block. As in the authors'
    code the flow's log-determinant is not used in training. Not mergeable (nonlinear).

    Args:
        flow_length (int): planar steps per flow ``L``. Defaults to 16 (the authors' code).
        recompute (bool): recompute the flows' intermediate tensors in backward instead of
            keeping them (ViT-B/16, batch 16, CPU: 1,411 instead of 4,818 MiB of training
            memory, 1.17x the step time). Defaults to True.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16: 24 x (1,536 + 1,537 L) parameters (L=16: 627,072; L=0: 36,864).
    """
    paper = ('Wang et al., Adapting Shortcut With Normalizing Flow: An Efficient Tuning Framework '
             'for Visual Recognition (SNF), CVPR 2023')
    placement = 'normalizing flows on both residual shortcuts of every block'

    def __init__(self, flow_length: int = 16, recompute: bool = True,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        self.recompute = recompute
        if flow_length < 0:
            raise ValueError(f'SNF flow_length must be >= 0, got {flow_length}')
        self.flow_length = flow_length
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'SNF blocks'):
            first, second = (spec.add_module(block.module, name, NormalizingFlow(
                block.dims, self.flow_length, self.recompute)) for name in ('snf_attn', 'snf_mlp'))
            saved = {}
            spec.on_block_input(block, lambda x, layout, d=saved: d.update(x=x))
            spec.on_attention_residual(
                block, lambda h, layout, f=first, d=saved: self._shortcut(h, d, f))
            spec.on_block_output(
                block, lambda y, layout, f=second, d=saved: y + f(d['h']) - d['h'])

    @staticmethod
    def _shortcut(h: Tensor, saved: dict, flow: NormalizingFlow) -> Tensor:
        """``h = x + attn`` -> ``flow(x) + attn``; remembers it for the second shortcut."""
        x = saved['x'].reshape(h.shape)
        saved['h'] = h + flow(x) - x
        return saved['h']

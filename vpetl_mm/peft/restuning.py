"""Res-Tuning-Bypass: tuners unbound from the backbone, on a bypass fed by detached taps.

Jiang et al., "Res-Tuning: A Flexible and Efficient Tuning Paradigm via Unbinding Tuner from
Backbone", NeurIPS 2023 (the concrete form of U-Tuning, Jiang et al., arXiv 2303.00690).
"""
import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod
from .layers import NoGradBlocks


class ResAdapter(nn.Module):
    """``x -> x + up(GELU(down(x)))`` with a width-``length`` bottleneck, ``(..., C) -> (..., C)``.

    Xavier-uniform weights, biases N(0, 1e-6) (ms-swift's ``ResAdapter``); ``zero_init`` zeroes
    the up projection (its ``zero_init_last``).
    """

    def __init__(self, dims: int, length: int, zero_init: bool):
        super().__init__()
        self.down = nn.Linear(dims, length)
        self.up = nn.Linear(length, dims)
        for linear in (self.down, self.up):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, std=1e-6)
        if zero_init:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(nn.functional.gelu(self.down(x)))


@PEFT_METHODS.register_module(name='Res-Tuning-Bypass')
@PEFT_METHODS.register_module()
class ResTuningBypass(PEFTMethod):
    """A bypass beside the frozen blocks: ``b_0`` = the detached input of the first block, then
    per block ``b_i = lateral_i(y_i) + vertical_i(b_{i-1})`` with the detached block output
    ``y_i``; ``b_N`` replaces the last block's output (the backbone's final norm and output
    formatting then apply). ``lateral`` / ``vertical`` are :class:`ResAdapter` tuners.

    No gradient reaches the backbone, so its blocks run with autograd off and keep no
    activations; only the taps and the bypass do. Plain ViTs (one width and sequence length).

    Modules: ``peft.<name>.laterals`` / ``.verticals``.

    Args:
        length (int): tuner bottleneck. Defaults to 10 (ms-swift's ``adapter_length``).
        zero_init_last (bool): zero the tuners' up projections. Defaults to True.

    ViT-B/16, length 10: 24 x 16,138 = 387,312 parameters.
    """
    paper = ('Jiang et al., Res-Tuning: A Flexible and Efficient Tuning Paradigm via Unbinding '
             'Tuner from Backbone, NeurIPS 2023')
    placement = ('bypass of lateral / vertical adapters on detached block outputs; replaces the '
                 'last block output')

    def __init__(self, length: int = 10, zero_init_last: bool = True):
        super().__init__()
        if length < 1:
            raise ValueError(f'Res-Tuning-Bypass length must be >= 1, got {length}')
        self.length = length
        self.zero_init_last = zero_init_last
        self._bypass = None
        self._no_grad = NoGradBlocks()

    def attach(self, backbone, spec):
        if not spec.accepts_extra_tokens or len({b.dims for b in spec.blocks}) != 1:
            raise TypeError(f'Res-Tuning-Bypass runs one sequence beside the blocks; '
                            f'{type(spec).__name__} changes width or length between blocks')
        dims, n = spec.blocks[0].dims, len(spec.blocks)
        self.laterals = nn.ModuleList(ResAdapter(dims, self.length, self.zero_init_last)
                                      for _ in range(n))
        self.verticals = nn.ModuleList(ResAdapter(dims, self.length, self.zero_init_last)
                                       for _ in range(n))
        self.to(spec.blocks[0].norm1.weight.device)
        last = spec.blocks[-1]
        spec.on_block_input(spec.blocks[0], lambda t, layout: self._start(t))
        self._no_grad.install(spec.blocks)
        for i, block in enumerate(spec.blocks):
            spec.on_block_output(block, lambda t, layout, i=i, end=block is last:
                                 self._step(t, i, end))

    def begin_forward(self):
        self._bypass = None
        self._no_grad.reset()

    def _start(self, tokens: Tensor):
        self._bypass = tokens.detach()

    def _step(self, tokens: Tensor, index: int, last: bool) -> Tensor:
        self._bypass = self.laterals[index](tokens.detach()) + self.verticals[index](self._bypass)
        return self._bypass.to(tokens.dtype) if last else tokens

"""LST: ladder side-tuning, a small transformer beside the frozen backbone.

Sung et al., "LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer Learning",
NeurIPS 2022 (its ladder, gates and side layers, applied to a ViT's token sequence).
"""
from typing import Optional

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod
from .layers import NoGradBlocks


class SideLayer(nn.Module):
    """A pre-norm transformer layer of width ``d``: ``(B, N, d) -> (B, N, d)``."""

    def __init__(self, dims: int, num_heads: int, ffn_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims)
        self.attn = nn.MultiheadAttention(dims, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dims)
        self.mlp = nn.Sequential(nn.Linear(dims, ffn_ratio * dims), nn.GELU(),
                                 nn.Linear(ffn_ratio * dims, dims))

    def forward(self, h: Tensor) -> Tensor:
        x = self.norm1(h)
        h = h + self.attn(x, x, x, need_weights=False)[0]
        return h + self.mlp(self.norm2(h))


@PEFT_METHODS.register_module()
class LST(PEFTMethod):
    """A side network of width ``C / r`` fed by ladders from every block's output; its result,
    projected back to ``C``, replaces the last block's output (the backbone's final norm and
    output formatting then apply as usual).

    ``h = down_0(embeddings)``; per block ``i``: ``h = g_i h + (1 - g_i) ladder_i(y_i)`` with the
    detached block output ``y_i``, ``g_i = sigmoid(alpha_i / T)`` (``alpha_i = 0``, ``T = 0.1``),
    then ``h = side_i(h)``; the last block returns ``up(h)``.

    Memory: the frozen blocks run with autograd off; only the side network, the ladders' inputs
    (one ``(B, N, C)`` tap per block) and the layers after the last block keep activations for
    backward, so the backward pass never enters the backbone. Side layers start from random
    init (the T5 code's pruned-backbone init has no ViT counterpart). Plain ViTs only (one
    width, one sequence length); Swin is refused.

    Modules: ``peft.<name>.*`` (``down``, ``ladders``, ``gates``, ``side``, ``up``).

    Args:
        reduction (int): ``r``. Defaults to 8.
        num_heads (int): heads of the side attention. Defaults to 4.
        ffn_ratio (int): side MLP width over ``C / r``. Defaults to 4.
        gate_temperature (float): ``T``. Defaults to 0.1.

    ViT-B/16, r=8: side layers 1,342,080 + ladders 884,736 + down / up 147,456 + 12 gates
    = 2,374,284 parameters (V-PETL's 2.38M).
    """
    paper = ('Sung et al., LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer '
             'Learning, NeurIPS 2022')
    placement = 'side transformer fed by ladders from every block output; replaces the last one'

    def __init__(self, reduction: int = 8, num_heads: int = 4, ffn_ratio: int = 4,
                 gate_temperature: float = 0.1):
        super().__init__()
        self.reduction = reduction
        self.num_heads = num_heads
        self.ffn_ratio = ffn_ratio
        self.gate_temperature = gate_temperature
        self._h: Optional[Tensor] = None
        self._no_grad = NoGradBlocks()

    def attach(self, backbone, spec):
        if not spec.accepts_extra_tokens or len({b.dims for b in spec.blocks}) != 1:
            raise TypeError(f'LST runs one side sequence beside the blocks; '
                            f'{type(spec).__name__} changes width or length between blocks')
        dims = spec.blocks[0].dims
        if dims % self.reduction:
            raise ValueError(f'LST reduction={self.reduction} does not divide width {dims}')
        side = dims // self.reduction
        if side % self.num_heads:
            raise ValueError(f'LST num_heads={self.num_heads} does not divide side width {side}')
        device = spec.blocks[0].norm1.weight.device
        n = len(spec.blocks)
        self.down = nn.Linear(dims, side, bias=False)
        self.ladders = nn.ModuleList(nn.Linear(dims, side, bias=False) for _ in range(n))
        self.gates = nn.Parameter(torch.zeros(n))
        self.side = nn.ModuleList(SideLayer(side, self.num_heads, self.ffn_ratio)
                                  for _ in range(n))
        self.up = nn.Linear(side, dims, bias=False)
        self.to(device)
        first, last = spec.blocks[0], spec.blocks[-1]
        spec.on_block_input(first, lambda tokens, layout: self._start(tokens))
        self._no_grad.install(spec, spec.blocks)
        for i, block in enumerate(spec.blocks):
            spec.on_block_output(block, lambda tokens, layout, i=i, end=block is last:
                                 self._ladder(tokens, i, end))

    def begin_forward(self):
        self._h = None
        self._no_grad.reset()

    def _start(self, tokens: Tensor):
        self._h = self.down(tokens)

    def _ladder(self, tokens: Tensor, index: int, last: bool) -> Tensor:
        """Block ``index`` output ``(B, N, C)``: one side step; the last returns ``up(h)``."""
        gate = torch.sigmoid(self.gates[index] / self.gate_temperature)
        h = gate * self._h + (1 - gate) * self.ladders[index](tokens.detach())
        self._h = self.side[index](h)
        return self.up(self._h).to(tokens.dtype) if last else tokens

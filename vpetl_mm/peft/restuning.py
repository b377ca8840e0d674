"""Res-Tuning and Res-Tuning-Bypass: tuners unbound from the backbone.

Jiang et al., "Res-Tuning: A Flexible and Efficient Tuning Paradigm via Unbinding Tuner from
Backbone", NeurIPS 2023, the concrete form of U-Tuning (Jiang et al., "Rethinking Efficient
Tuning Methods from a Unified Perspective", arXiv 2303.00690): every tuner runs parallel to a
frozen operation, ``x' = OP(x) + U(x)``. Res-Tuning places such tuners beside the attention and
the MLP of every block; Res-Tuning-Bypass chains them on a bypass that no gradient leaves.
"""
import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, renamed_argument, select_blocks
from .layers import BottleneckAdapter, NoGradBlocks


def res_adapter(dims: int, width: int, zero_init: bool) -> BottleneckAdapter:
    """ms-swift's ``ResAdapter``: ``x -> x + up(GELU(down(x)))`` (``.branch`` without the ``x``)
    of hidden width ``width``, xavier-uniform weights, biases N(0, 1e-6); ``zero_init`` zeroes
    the up projection (its ``zero_init_last``)."""
    return BottleneckAdapter(dims, width, init='xavier', zero_up=zero_init, residual=True)


def attend_alone(q: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """``softmax(q K^T / sqrt(d)) V`` over the given key / value tokens only: ``q``
    ``(B', heads, N, d)``, ``keys`` / ``values`` ``(heads, L, d)`` -> ``(B', heads, N, d)``."""
    weights = (q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
    return weights @ values


class ResPrefix(nn.Module):
    """The unbound prefix beside an attention: per head, ``softmax(q P_k^T / sqrt(d)) P_v``
    over ``L`` learned key / value tokens only, added to the attention product so it passes the
    frozen output projection. (Prefix tuning puts ``P_k``, ``P_v`` into the attention's own
    softmax; Res-Tuning drops the coupling weight that this creates.)

    ``P_k`` is Xavier-uniform, ``P_v`` zero: the branch starts at exactly zero.
    """

    def __init__(self, dims: int, length: int):
        super().__init__()
        self.keys = nn.Parameter(nn.init.xavier_uniform_(torch.empty(length, dims)))
        self.values = nn.Parameter(torch.zeros(length, dims))

    def forward(self, q: Tensor, out: Tensor) -> Tensor:
        """``q``, ``out``: ``(B', heads, N, d)`` -> ``out`` plus the prefix attention."""
        _, heads, _, d = q.shape
        if heads * d != self.keys.shape[1]:
            raise ValueError(f'Res-Tuning prefix of width {self.keys.shape[1]} meets an '
                             f'attention of {heads} heads x {d}')
        pk, pv = (p.to(q.dtype).reshape(-1, heads, d).transpose(0, 1)
                  for p in (self.keys, self.values))  # (heads, L, d)
        return out + attend_alone(q, pk, pv)


class ResPrompt(nn.Module):
    """The unbound prompt beside an attention: ``L`` learned tokens ``P`` ``(L, C)`` pass the
    block's ``norm1`` and frozen key / value projections, and the block's queries attend over
    them alone, ``softmax(q K_P^T / sqrt(d)) V_P`` per head, added to the attention product (the
    method calls :meth:`forward` with the block). Xavier-uniform init: unlike the other
    Res-Tuners it does not start at zero."""

    def __init__(self, dims: int, length: int):
        super().__init__()
        self.prompts = nn.Parameter(nn.init.xavier_uniform_(torch.empty(length, dims)))

    def forward(self, q: Tensor, out: Tensor, block) -> Tensor:
        """``q``, ``out``: ``(B', heads, N, d)``; ``block``: its :class:`BlockInfo`."""
        _, heads, _, d = q.shape
        z = block.norm1(self.prompts.to(q.dtype))
        qkv = block.sites['qkv'].linear(z)  # (L, 3C), deltas included
        _, pk, pv = qkv.reshape(-1, 3, heads, d).permute(1, 2, 0, 3)  # (heads, L, d) each
        return out + attend_alone(q, pk, pv)


class ResTuners(nn.Module):
    """One block's tuners: ``mha`` beside the attention, ``ffn`` beside the MLP (either may be
    absent)."""

    def __init__(self, dims: int, mha: Optional[str], ffn: Optional[str], length: int,
                 bottleneck: int):
        super().__init__()
        if mha == 'prefix':
            self.mha = ResPrefix(dims, length)
        elif mha == 'prompt':
            self.mha = ResPrompt(dims, length)
        elif mha == 'adapter':
            self.mha = res_adapter(dims, bottleneck, zero_init=True)
        if ffn == 'adapter':
            self.ffn = res_adapter(dims, bottleneck, zero_init=True)


@PEFT_METHODS.register_module(name='Res-Tuning')
@PEFT_METHODS.register_module()
class ResTuning(PEFTMethod):
    """Res-Tuners parallel to the frozen operations of every block,
    ``h = x + Attn(LN1(x)) + U_mha(LN1(x))`` and ``y = h + MLP(LN2(h)) + U_ffn(LN2(h))``:

    * ``'adapter'`` (Res-Adapter): ``up(GELU(down(z)))`` on the operation's input ``z``, added
      beside the branch (outside its drop path); Xavier-uniform weights, the up projection zero.
    * ``'prefix'`` (Res-Prefix, attention only): :class:`ResPrefix`, an attention of the block's
      own queries over learned keys / values alone, through the frozen output projection.
    * ``'prompt'`` (Res-Prompt, attention only): :class:`ResPrompt`, the same over learned
      tokens that pass the frozen ``norm1`` and key / value projections.

    Adapters and prefixes start at zero (the model starts as the backbone); prompts do not.
    Nothing is merged (the tuners are nonlinear). Prefixes and prompts need the per-head
    attention product: plain ViTs and the 2-D Swins (Video Swin is refused); adapters work on
    every family.

    The paper publishes no code for this form (its code has the bypass only) and no VTAB sizes:
    the defaults (prefix of 10 beside the attention, adapter of 10 beside the MLP, the widths of
    ms-swift's Res-Tuning) and the inits are ours.

    Modules: ``restuning`` attached to each block (``.mha``, ``.ffn``).

    Args:
        mha (str | None): tuner beside the attention: ``'prefix'``, ``'prompt'``,
            ``'adapter'`` or None. Defaults to ``'prefix'``.
        ffn (str | None): tuner beside the MLP: ``'adapter'`` or None. Defaults to
            ``'adapter'``.
        length (int): prefix / prompt tokens ``L``. Defaults to 10.
        bottleneck (int): adapter width. Defaults to 10.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16 with the defaults: 12 x (2 x 10 x 768 + 16,138) = 377,976 parameters.
    """
    paper = ('Jiang et al., Res-Tuning: A Flexible and Efficient Tuning Paradigm via Unbinding '
             'Tuner from Backbone, NeurIPS 2023 (U-Tuning, arXiv 2303.00690)')
    placement = ('tuners parallel to the attention (prefix, prompt or adapter) and the MLP '
                 '(adapter)')
    MHA_TUNERS = ('prefix', 'prompt', 'adapter', None)
    FFN_TUNERS = ('adapter', None)

    def __init__(self, mha: Optional[str] = 'prefix', ffn: Optional[str] = 'adapter',
                 length: int = 10, bottleneck: int = 10,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if mha not in self.MHA_TUNERS:
            raise ValueError(f'Res-Tuning mha={mha!r}: one of {self.MHA_TUNERS}')
        if ffn not in self.FFN_TUNERS:
            raise ValueError(f'Res-Tuning ffn={ffn!r}: one of {self.FFN_TUNERS} (prefixes and '
                             'prompts need the queries of an attention)')
        if mha is None and ffn is None:
            raise ValueError('Res-Tuning with mha=None and ffn=None tunes nothing')
        if length < 1 or bottleneck < 1:
            raise ValueError(f'Res-Tuning length and bottleneck must be >= 1, got {length}, '
                             f'{bottleneck}')
        self.mha, self.ffn = mha, ffn
        self.length, self.bottleneck = length, bottleneck
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'Res-Tuning blocks'):
            tuners = spec.add_module(block.module, 'restuning', ResTuners(
                block.dims, self.mha, self.ffn, self.length, self.bottleneck))
            if self.mha == 'prefix':
                spec.on_attention_heads(block, tuners.mha)
            elif self.mha == 'prompt':
                spec.on_attention_heads(block, lambda q, out, b=block, t=tuners.mha: t(q, out, b))
            elif self.mha == 'adapter':  # beside the attention, read at its input
                spec.on_parallel(block, 'attn_input', 'attn_residual', tuners.mha.branch)
            if self.ffn == 'adapter':  # beside the MLP
                spec.on_parallel(block, 'mlp_input', 'block_output', tuners.ffn.branch)


@PEFT_METHODS.register_module(name='Res-Tuning-Bypass')
@PEFT_METHODS.register_module()
class ResTuningBypass(PEFTMethod):
    """A bypass beside the frozen blocks: ``b_0`` = the detached input of the first block, then
    per block ``b_i = lateral_i(y_i) + vertical_i(b_{i-1})`` with the detached block output
    ``y_i``; ``b_N`` replaces the last block's output (the backbone's final norm and output
    formatting then apply). ``lateral`` / ``vertical`` are :func:`res_adapter` tuners.

    No gradient reaches the backbone, so its blocks run with autograd off and keep no
    activations; only the taps and the bypass do. Plain ViTs (one width and sequence length).

    Modules: ``peft.<name>.laterals`` / ``.verticals``.

    Args:
        bottleneck (int): tuner width. Defaults to 10 (ms-swift's ``adapter_length``). (Formerly
            ``length``, still accepted.)
        zero_init_last (bool): zero the tuners' up projections. Defaults to True.

    ViT-B/16, bottleneck 10: 24 x 16,138 = 387,312 parameters.
    """
    paper = ('Jiang et al., Res-Tuning: A Flexible and Efficient Tuning Paradigm via Unbinding '
             'Tuner from Backbone, NeurIPS 2023')
    placement = ('bypass of lateral / vertical adapters on detached block outputs; replaces the '
                 'last block output')

    def __init__(self, bottleneck: int = 10, zero_init_last: bool = True,
                 length: Optional[int] = None):
        super().__init__()
        bottleneck = renamed_argument('Res-Tuning-Bypass', 'length', length, 'bottleneck',
                                      bottleneck)
        if bottleneck < 1:
            raise ValueError(f'Res-Tuning-Bypass bottleneck must be >= 1, got {bottleneck}')
        self.bottleneck = bottleneck
        self.zero_init_last = zero_init_last
        self._bypass = None
        self._no_grad = NoGradBlocks()

    def attach(self, backbone, spec):
        if not spec.accepts_extra_tokens or len({b.dims for b in spec.blocks}) != 1:
            raise TypeError(f'Res-Tuning-Bypass runs one sequence beside the blocks; '
                            f'{type(spec).__name__} changes width or length between blocks')
        dims, n = spec.blocks[0].dims, len(spec.blocks)
        self.laterals = nn.ModuleList(res_adapter(dims, self.bottleneck, self.zero_init_last)
                                      for _ in range(n))
        self.verticals = nn.ModuleList(res_adapter(dims, self.bottleneck, self.zero_init_last)
                                       for _ in range(n))
        self.to(spec.blocks[0].norm1.weight.device)
        last = spec.blocks[-1]
        spec.on_block_input(spec.blocks[0], lambda t, layout: self._start(t))
        self._no_grad.install(spec, spec.blocks)
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

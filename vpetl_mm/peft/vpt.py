"""VPT: visual prompt tuning, shallow and deep.

Jia et al., "Visual Prompt Tuning", ECCV 2022.
"""
import math
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod


class VPTBase(PEFTMethod):
    """``length`` learned tokens inserted after the prefix tokens (cls) of the sequence.

    The prompts enter every block's input after the prefix and are taken out of its output
    again, so the backbone's own code (position embedding, final norm, output formatting) never
    sees them and every output type keeps its shape. Shallow VPT inserts its prompts once and
    carries their outputs from block to block (the same computation as leaving them in the
    sequence); deep VPT replaces them with the next block's own prompts. They get no position
    embedding. On plain ViTs (mmpretrain, mmseg, mmaction) the prompts join the sequence; on
    the 2-D Swins (mmpretrain, mmseg, mmdet) they join every window, as the VPT paper's Swin
    variant (below); Video Swin is refused.

    Init (as the VPT code): uniform in ``+-sqrt(6 / (fan_in + C))`` with ``fan_in`` the patch
    projection's input size (``3 x 16 x 16`` on ViT-B/16). The parameter is
    ``peft.<name>.prompts`` ``(total, C)``: the prompt sets one after the other.

    Args:
        length (int | sequence of int): prompt tokens per set; deep VPT also takes one length
            per block (0 for none), as NOAH's searched subnets use.
        dropout (float): dropout on the prompts entering a block. Defaults to 0.
    """
    deep: bool = False

    def __init__(self, length: Union[int, Sequence[int]] = 100, dropout: float = 0.0):
        super().__init__()
        lengths = [length] if isinstance(length, int) else list(length)
        if not isinstance(length, int) and not self.deep:
            raise ValueError(f'{type(self).__name__} takes one length, got {lengths}')
        if any(n < 0 for n in lengths) or sum(lengths) < 1 or (
                isinstance(length, int) and length < 1):
            raise ValueError(f'{type(self).__name__} length must be >= 1, got {length}')
        self.length = length
        self.dropout = nn.Dropout(dropout)
        self.prompts: Optional[nn.Parameter] = None
        self._lengths: List[int] = []
        self._offsets: List[int] = []
        self._prefix = 0
        self._inserted = 0
        self._carry: Optional[Tensor] = None

    def attach(self, backbone, spec):
        if not spec.accepts_extra_tokens and spec.grid_rank == 3:
            raise TypeError(f'{type(self).__name__} on {type(spec).__name__}: VPT\'s Swin '
                            'variant is defined for 2-D windows; 3-D (video) windows are not '
                            'supported')
        if not spec.accepts_extra_tokens:
            return self._attach_windows(spec) if self.deep else self._attach_windows_shallow(spec)
        dims = {b.dims for b in spec.blocks}
        if len(dims) != 1:
            raise TypeError(f'{type(self).__name__} needs one token width, got {sorted(dims)}')
        if isinstance(self.length, int):
            self._lengths = [self.length] * (len(spec.blocks) if self.deep else 1)
        elif len(self.length) != len(spec.blocks):
            raise ValueError(f'{type(self).__name__} length={list(self.length)}: one length per '
                             f'block needed, the backbone has {len(spec.blocks)} blocks')
        else:
            self._lengths = list(self.length)
        self._offsets = [sum(self._lengths[:i]) for i in range(len(self._lengths))]
        self.prompts = self._new_prompts(spec, sum(self._lengths), dims.pop())
        for block in spec.blocks:
            spec.replace_block_input(block, lambda t, layout, i=block.index:
                                     self._insert(t, layout, i))
            spec.on_block_output(block, lambda t, layout: self._remove(t))

    @staticmethod
    def _new_prompts(spec, length: int, width: int) -> nn.Parameter:
        """``(length, width)`` prompts, uniform in ``+-sqrt(6 / (fan_in + width))`` with the
        patch projection's ``fan_in`` (the VPT code's init), on the backbone's device."""
        patch = spec.patch_projection()
        bound = math.sqrt(6.0 / (patch.in_channels * math.prod(patch.kernel_size) + width))
        prompts = torch.empty(length, width, device=patch.weight.device)
        return nn.Parameter(nn.init.uniform_(prompts, -bound, bound))

    def _attach_windows(self, spec):
        """Windowed blocks (Swin): each block's prompts, ``(L, C_block)``, pass the block's
        ``norm1`` and frozen ``qkv`` and their keys / values are prepended to every window's
        (their own outputs are not used: the deep prompts are replaced at every block)."""
        if not isinstance(self.length, int):
            raise ValueError('VPT-deep on windowed blocks takes one length')
        self.window_prompts = nn.ParameterList()
        for block in spec.blocks:
            self.window_prompts.append(self._new_prompts(spec, self.length, block.dims))
            spec.on_attention_kv(block, lambda k, v, b=block, i=len(self.window_prompts) - 1:
                                 self._window_kv(k, v, b, i))

    def _window_kv(self, k: Tensor, v: Tensor, block, index: int):
        """``k``, ``v``: ``(windows * B, heads, N, d)`` -> the prompts' keys / values first."""
        prompts = self.dropout(self.window_prompts[index]).to(k.dtype)
        qkv = block.sites['qkv'].linear(block.norm1(prompts))  # (L, 3C)
        _, pk, pv = qkv.reshape(self.length, 3, k.shape[1], k.shape[3]).permute(1, 2, 0, 3)
        b = k.shape[0]
        return (torch.cat([pk.expand(b, -1, -1, -1), k], dim=2),
                torch.cat([pv.expand(b, -1, -1, -1), v], dim=2))

    def _attach_windows_shallow(self, spec):
        """Windowed blocks (Swin), shallow: one prompt set ``(L, C_0)`` joins every window of
        every block (VPT's Swin variant). In a block the prompts pass ``norm1`` and the frozen
        ``qkv``; their keys / values are prepended in each window (bias and shift mask padded
        with zeros) and their own queries attend over the prompts and the window's tokens; the
        prompt outputs are averaged over the sample's windows, then take the attention residual,
        ``norm2``, the MLP and its residual. Between stages they pass the frozen patch merging
        as tokens filling their 2 x 2 neighbourhood (:meth:`merge_tokens`). The backbone's
        outputs never include them."""
        if not isinstance(self.length, int):
            raise ValueError('VPT-shallow takes one length')
        self.prompts = self._new_prompts(spec, self.length, spec.blocks[0].dims)
        self._stage = 0
        for block in spec.blocks:
            spec.on_block_input(block, lambda t, layout, b=block: self._enter_windows(t, b, spec))
            spec.on_attention_kv(block, lambda k, v, b=block: self._shallow_window_kv(k, v, b))
            spec.on_block_output(block, lambda t, layout, b=block: self._leave_windows(t, b))

    def _enter_windows(self, tokens: Tensor, block, spec):
        if block.index == 0:
            self._carry = self.dropout(self.prompts).to(tokens.dtype).expand(
                tokens.shape[0], -1, -1)
        elif block.stage != self._stage:  # the previous stage ended in a patch merging
            self._carry = spec.merge_tokens(self._stage, self._carry)
        self._stage = block.stage

    def _shallow_window_kv(self, k: Tensor, v: Tensor, block):
        """``k``, ``v``: ``(windows * B, heads, N, d)`` (windows of a sample adjacent) -> the
        prompts' keys / values first; the prompts' own attention output is kept."""
        prompts = self._carry  # (B, L, C)
        b, length, c = prompts.shape
        heads, d = k.shape[1], k.shape[3]
        windows = k.shape[0] // b
        qkv = block.sites['qkv'].linear(block.norm1(prompts))  # (B, L, 3C)
        pq, pk, pv = (t.repeat_interleave(windows, dim=0) for t in qkv.reshape(
            b, length, 3, heads, d).permute(2, 0, 3, 1, 4))  # (windows * B, heads, L, d)
        k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        weights = (pq @ k.transpose(-2, -1) / math.sqrt(d)).softmax(dim=-1)
        out = (weights @ v).reshape(b, windows, heads, length, d).mean(dim=1)
        self._prompt_attn = block.sites['proj'].linear(out.transpose(1, 2).reshape(b, length, c))
        return k, v

    def _leave_windows(self, tokens: Tensor, block) -> Tensor:
        h = self._carry + self._prompt_attn
        self._carry = h + block.mlp(block.norm2(h))
        return tokens

    def begin_forward(self):
        self._carry = None

    def _insert(self, tokens: Tensor, layout, index: int) -> Tensor:
        """``(B, N, C)`` -> ``(B, N + L, C)``, the block's ``L`` prompts right after the prefix."""
        self._prefix = layout.num_prefix
        if self.deep and not self._lengths[index]:  # no prompts here: the block runs as it is
            self._inserted = 0                      # (and autograd records nothing for it)
            return tokens
        if self.deep or self._carry is None:
            i = index if self.deep else 0
            start = self._offsets[i]
            prompts = self.dropout(self.prompts[start:start + self._lengths[i]])
            prompts = prompts.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        else:
            prompts = self._carry
        self._inserted = prompts.shape[1]
        p = self._prefix
        return torch.cat([tokens[:, :p], prompts, tokens[:, p:]], dim=1)

    def _remove(self, tokens: Tensor) -> Tensor:
        """``(B, N + L, C)`` -> ``(B, N, C)``; shallow VPT keeps the prompt outputs."""
        if not self._inserted:
            return tokens
        p, end = self._prefix, self._prefix + self._inserted
        self._carry = None if self.deep else tokens[:, p:end]
        return torch.cat([tokens[:, :p], tokens[:, end:]], dim=1)


@PEFT_METHODS.register_module(name='VPT-shallow')
@PEFT_METHODS.register_module()
class VPTShallow(VPTBase):
    __doc__ = VPTBase.__doc__ + '''
    Shallow: one set of prompts, inserted before the first block. On Swin one set of stage-0
    width joins every window of every block and is carried through the patch mergings
    (``_attach_windows_shallow``); VPT's code averages the prompts into the pooled feature and
    averages window outputs across the samples of a batch (a window-order mismatch), here each
    sample averages its own windows and the backbone's outputs stay the patch tokens.

    ViT-B/16, 100 prompts: 100 x 768 = 76,800 parameters.
    '''
    paper = 'Jia et al., Visual Prompt Tuning, ECCV 2022'
    placement = 'learned tokens after the cls token, inserted before the first block'


@PEFT_METHODS.register_module(name='VPT-deep')
@PEFT_METHODS.register_module()
class VPTDeep(VPTBase):
    __doc__ = VPTBase.__doc__ + '''
    Deep: every block gets its own prompts, replacing the previous block's prompt outputs. On
    windowed blocks (Swin, as the VPT paper does) each block's prompts are prepended to every
    window inside the attention (``peft.<name>.window_prompts.<block>``).

    ViT-B/16: 12 x 768 = 9,216 parameters per prompt token.
    '''
    deep = True
    paper = 'Jia et al., Visual Prompt Tuning, ECCV 2022'
    placement = 'learned tokens after the cls token, replaced at every block'

"""VPT: visual prompt tuning, shallow and deep.

Jia et al., "Visual Prompt Tuning", ECCV 2022.
"""
import math
from typing import Optional

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
    embedding. Only for specs whose blocks take a longer sequence (plain ViTs: mmpretrain,
    mmseg, mmaction); windowed blocks (Swin) are refused.

    Init (as the VPT code): uniform in ``+-sqrt(6 / (fan_in + C))`` with ``fan_in`` the patch
    projection's input size (``3 x 16 x 16`` on ViT-B/16). The parameter is
    ``peft.<name>.prompts`` ``(num_sets, length, C)``.

    Args:
        length (int): prompt tokens per set.
        dropout (float): dropout on the prompts entering a block. Defaults to 0.
    """
    deep: bool = False

    def __init__(self, length: int = 100, dropout: float = 0.0):
        super().__init__()
        if length < 1:
            raise ValueError(f'{type(self).__name__} length must be >= 1, got {length}')
        self.length = length
        self.dropout = nn.Dropout(dropout)
        self.prompts: Optional[nn.Parameter] = None
        self._prefix = 0
        self._carry: Optional[Tensor] = None

    def attach(self, backbone, spec):
        if not spec.accepts_extra_tokens:
            raise TypeError(f'{type(self).__name__} inserts tokens into the sequence, which '
                            f'{type(spec).__name__} blocks (windowed attention) cannot take; '
                            'use it on a plain ViT (mmpretrain / mmseg / mmaction)')
        dims = {b.dims for b in spec.blocks}
        if len(dims) != 1:
            raise TypeError(f'{type(self).__name__} needs one token width, got {sorted(dims)}')
        patch = spec.patch_projection()
        fan_in = patch.in_channels * math.prod(patch.kernel_size)
        bound = math.sqrt(6.0 / (fan_in + dims.pop()))
        width = spec.blocks[0].dims
        sets = len(spec.blocks) if self.deep else 1
        self.prompts = nn.Parameter(torch.empty(sets, self.length, width,
                                                device=patch.weight.device))
        nn.init.uniform_(self.prompts, -bound, bound)
        for block in spec.blocks:
            spec.replace_block_input(block, lambda t, layout, i=block.index:
                                     self._insert(t, layout, i))
            spec.on_block_output(block, lambda t, layout: self._remove(t))

    def begin_forward(self):
        self._carry = None

    def _insert(self, tokens: Tensor, layout, index: int) -> Tensor:
        """``(B, N, C)`` -> ``(B, N + length, C)``, the prompts right after the prefix."""
        self._prefix = layout.num_prefix
        if self.deep or self._carry is None:
            prompts = self.dropout(self.prompts[index if self.deep else 0])
            prompts = prompts.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        else:
            prompts = self._carry
        p = self._prefix
        return torch.cat([tokens[:, :p], prompts, tokens[:, p:]], dim=1)

    def _remove(self, tokens: Tensor) -> Tensor:
        """``(B, N + length, C)`` -> ``(B, N, C)``; shallow VPT keeps the prompt outputs."""
        p, end = self._prefix, self._prefix + self.length
        self._carry = None if self.deep else tokens[:, p:end]
        return torch.cat([tokens[:, :p], tokens[:, end:]], dim=1)


@PEFT_METHODS.register_module(name='VPT-shallow')
@PEFT_METHODS.register_module()
class VPTShallow(VPTBase):
    __doc__ = VPTBase.__doc__ + '''
    Shallow: one set of prompts, inserted before the first block.

    ViT-B/16, 100 prompts: 100 x 768 = 76,800 parameters.
    '''
    paper = 'Jia et al., Visual Prompt Tuning, ECCV 2022'
    placement = 'learned tokens after the cls token, inserted before the first block'


@PEFT_METHODS.register_module(name='VPT-deep')
@PEFT_METHODS.register_module()
class VPTDeep(VPTBase):
    __doc__ = VPTBase.__doc__ + '''
    Deep: every block gets its own prompts, replacing the previous block's prompt outputs.

    ViT-B/16: 12 x 768 = 9,216 parameters per prompt token.
    '''
    deep = True
    paper = 'Jia et al., Visual Prompt Tuning, ECCV 2022'
    placement = 'learned tokens after the cls token, replaced at every block'

"""IA³: learned vectors that rescale the keys, the values and the MLP's hidden activations.

Liu et al., "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning", NeurIPS 2022.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks

TARGETS = ('k', 'v', 'ff')


@PEFT_METHODS.register_module(name='IA3')
class IA3(PEFTMethod):
    """``k -> l_k * k``, ``v -> l_v * v`` and ``fc2(h) -> fc2(l_ff * h)`` in every selected
    block, ``h = act(fc1(x))`` being the MLP's hidden activation (the paper's
    ``(l_ff * act(W_1 x)) W_2``).

    The vectors start at one, so the backbone is unchanged at initialisation. ``l_k`` and
    ``l_v`` scale the rows of the fused ``qkv`` output (one elementwise product over its ``3C``
    channels), ``l_ff`` the input of ``fc2``. All three are diagonal maps next to a linear:
    :meth:`merge` folds them into the ``qkv`` rows (weight and bias) and the ``fc2`` columns.
    Parameters live in the method, ``peft.methods.ia3.scales.<block>``.

    Args:
        targets (sequence of str): among ``'k'``, ``'v'``, ``'ff'``. Defaults to all three.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16: 12 x (768 + 768 + 3,072) = 55,296 parameters.
    """
    placement = 'learned vectors scaling the keys, the values and the MLP hidden activations'
    mergeable = True
    paper = ('Liu et al., Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than '
             'In-Context Learning (IA3), NeurIPS 2022')

    def __init__(self, targets: Sequence[str] = TARGETS, blocks: Optional[Sequence[int]] = None):
        super().__init__()
        bad = [t for t in targets if t not in TARGETS]
        if bad or not targets or len(set(targets)) != len(targets):
            raise ValueError(f'IA3 targets={list(targets)}: choose distinct ones among {TARGETS}')
        self.targets = tuple(t for t in TARGETS if t in targets)
        self.blocks = blocks
        self.scales = nn.ModuleDict()  # block index -> ParameterDict(target -> vector)
        self._blocks = {}  # block index -> BlockInfo: where fold() writes

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'IA3 blocks'):
            device = block.sites['qkv'].weight.device
            widths = dict(k=block.dims, v=block.dims, ff=block.sites['fc2'].in_features)
            vectors = nn.ParameterDict({t: nn.Parameter(torch.ones(widths[t], device=device))
                                        for t in self.targets})
            self.scales[str(block.index)] = vectors
            self._blocks[str(block.index)] = block
            if 'k' in vectors or 'v' in vectors:
                block.sites['qkv'].add_output_transform(
                    lambda x, y, s=vectors, c=block.dims: y * self._qkv_scale(s, c).to(y.dtype))
            if 'ff' in vectors:
                spec.on_input(block.sites['fc2'].owner, lambda h, s=vectors: h * s['ff'])

    @staticmethod
    def _qkv_scale(vectors: nn.ParameterDict, dims: int) -> torch.Tensor:
        """The ``(3C,)`` scale of the fused ``qkv`` output: ones for ``q``, ``l_k``, ``l_v``."""
        ones = vectors[next(iter(vectors))].new_ones(dims)
        return torch.cat([ones, vectors['k'] if 'k' in vectors else ones,
                          vectors['v'] if 'v' in vectors else ones])

    def fold(self):
        for key, vectors in self.scales.items():
            qkv = self._blocks[key].sites['qkv']
            if ('k' in vectors or 'v' in vectors) and qkv.root().bias_fn is not None:
                raise ValueError('cannot fold IA3 into this qkv: its bias is assembled outside '
                                 'the linear (mmaction ViT q_bias / v_bias)')
        for key, vectors in self.scales.items():
            block = self._blocks[key]
            if 'k' in vectors or 'v' in vectors:
                qkv = block.sites['qkv']
                factor = self._qkv_scale(vectors, block.dims) - 1  # (3C,)
                bias = qkv.bias
                qkv.merge_(factor[:, None] * qkv.weight,
                           None if bias is None else factor * bias)
            if 'ff' in vectors:
                fc2 = block.sites['fc2']
                fc2.merge_(fc2.weight * (vectors['ff'] - 1)[None, :])

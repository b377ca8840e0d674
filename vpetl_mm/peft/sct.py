"""SCT: salient channel tuning.

Zhao et al., "SCT: A Simple Baseline for Parameter-Efficient Fine-Tuning via Salient Channels",
IJCV (arXiv 2309.08513).
"""
from typing import Dict, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_world_size
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks
from .selection import class_labels

MODES = ('attn', 'mlp')


class ChannelAdapter(nn.Module):
    """``h[..., index] <- h[..., index] + W h[..., index] + b`` on ``topN`` selected channels.

    ``W`` ``(topN, topN)`` is truncated-normal (std 0.02), ``b`` zero, as in the authors' code.
    ``index`` ``(topN,)`` holds the channels the selection pass picked (-1 before it ran).
    """

    def __init__(self, top_n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(top_n, top_n))
        self.bias = nn.Parameter(torch.zeros(top_n))
        nn.init.trunc_normal_(self.weight, std=0.02)
        self.register_buffer('index', torch.full((top_n, ), -1, dtype=torch.long))

    def delta(self, h: Tensor) -> Tensor:
        """``(..., C) -> (..., topN)``: what is added to the selected channels."""
        return F.linear(h.index_select(-1, self.index), self.weight, self.bias)


@PEFT_METHODS.register_module()
class SCT(PEFTMethod):
    """A ``topN x topN`` linear map on the ``topN`` most salient channels of every block.

    Before training, a pass over the training data through the frozen backbone (no method in
    the path) scores each channel per block with the class-aware importance score: for every
    class, the L2 norm of the channel over all its samples' tokens (prefix tokens such as cls
    excluded), averaged over the classes; the ``top_n`` highest are kept
    (:class:`vpetl_mm.PEFTSelectionHook` runs the pass; the indices are stored with the
    trainable weights, so a resumed run keeps them).

    Modes (``mode``):

    * ``'attn'`` (the authors' default): on the residual stream after attention (the input of
      ``norm2``, which also feeds the MLP's residual), scored there. Not mergeable.
    * ``'mlp'``: on the MLP output before drop-path, scored on the block output as the authors
      do; folded exactly into ``fc2``'s selected rows by :meth:`merge`.

    Modules: ``sct`` attached to each block. The method raises if the backbone runs in training
    before the selection pass, rather than training unselected channels.

    Args:
        top_n (int): channels per block. Defaults to 96 (1/8 of 768).
        mode (str): ``'attn'`` or ``'mlp'``. Defaults to ``'attn'``.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, top_n=96: 12 x (96 x 96 + 96) = 111,744 parameters.
    """
    paper = ('Zhao et al., SCT: A Simple Baseline for Parameter-Efficient Fine-Tuning via '
             'Salient Channels, IJCV')
    placement = ('linear map on the top-N salient channels of the residual stream after '
                 'attention (or of the MLP output), chosen by a pass over the training data')
    needs_selection = True

    def __init__(self, top_n: int = 96, mode: str = 'attn',
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f'SCT mode={mode!r}: choose one of {MODES}')
        if top_n < 1:
            raise ValueError(f'SCT top_n must be >= 1, got {top_n}')
        self.top_n = top_n
        self.mode = mode
        self.mergeable = mode == 'mlp'
        self.blocks = blocks
        self._adapters = []  # (block, adapter)
        self._stats: Optional[Dict[int, Dict[int, Tensor]]] = None  # selection pass state
        self._labels: Optional[Tensor] = None

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'SCT blocks'):
            if self.top_n > block.dims:
                raise ValueError(f'SCT top_n={self.top_n} exceeds the {block.dims} channels of '
                                 f'block {block.index}')
            adapter = spec.add_module(block.module, 'sct', ChannelAdapter(self.top_n))
            if self.mode == 'attn':
                spec.on_attention_residual(
                    block, lambda h, layout, a=adapter, i=block.index: self._attn_hook(
                        h, a, layout, i))
            else:
                block.sites['fc2'].add_output_transform(
                    lambda x, y, a=adapter: self._mlp_transform(y, a))
                spec.on_block_output(
                    block, lambda t, layout, i=block.index: self._observe(t, layout, i))
            self._adapters.append((block, adapter))

    # -- forward ------------------------------------------------------------------------------
    def _check(self):
        if not self.is_selected():
            raise RuntimeError('SCT runs before its channel-selection pass: add '
                               "dict(type='vpetl_mm.PEFTSelectionHook') to custom_hooks (the "
                               'vpetl_mm default_runtime has it) or load a checkpoint of a run '
                               'that made the selection')

    def _attn_hook(self, h: Tensor, adapter: ChannelAdapter, layout, index: int) -> Tensor:
        if self._stats is not None:
            return self._observe(h, layout, index)
        self._check()
        return h.index_add(-1, adapter.index, adapter.delta(h))

    def _mlp_transform(self, y: Tensor, adapter: ChannelAdapter) -> Tensor:
        if self._stats is not None:
            return y
        self._check()
        return y.index_add(-1, adapter.index, adapter.delta(y))

    # -- selection ----------------------------------------------------------------------------
    def is_selected(self) -> bool:
        return all(bool((a.index >= 0).all()) for _, a in self._adapters)

    def _observe(self, h: Tensor, layout, index: int):
        """Accumulate per-class sums of squares ``(C,)`` of ``h`` ``(B, ..., C)``."""
        if self._stats is None:
            return h
        tokens = h.reshape(h.shape[0], -1, h.shape[-1])[:, layout.num_prefix:]
        sq = tokens.detach().float().pow(2).sum(1)  # (B, C)
        per_block = self._stats.setdefault(index, {})
        for c in self._labels.unique().tolist():
            s = sq[self._labels == c].sum(0)
            per_block[c] = per_block[c] + s if c in per_block else s
        return h

    @torch.no_grad()
    def select(self, model: nn.Module, batches: Iterable[dict]) -> str:
        model.eval()
        self._stats = {}
        try:
            for data in batches:
                self._labels = class_labels(data['data_samples']).to(self._device())
                model(data['inputs'], data['data_samples'], mode='tensor')
            stats = self._stats
        finally:
            self._stats = None
        if not stats:
            raise RuntimeError('SCT selection pass saw no data: the training dataloader is empty')
        for block, adapter in self._adapters:
            score = self._class_aware_score(stats[block.index])
            adapter.index.copy_(torch.topk(score, self.top_n).indices.sort().values)
        first = self._adapters[0][1].index[:8].tolist()
        return (f'SCT picked {self.top_n} channels in each of {len(self._adapters)} blocks '
                f'(block {self._adapters[0][0].index}: {first}...)')

    def _class_aware_score(self, per_class: Dict[int, Tensor]) -> Tensor:
        """Mean over classes of each channel's L2 norm, summed over every rank's data."""
        num = torch.tensor([max(per_class) + 1], device=self._device())
        if get_world_size() > 1:
            all_reduce(num, op='max')
        dims = next(iter(per_class.values())).shape[0]
        sums = torch.zeros(int(num), dims, device=self._device())
        seen = torch.zeros(int(num), device=self._device())
        for c, s in per_class.items():
            sums[c] = s
            seen[c] = 1
        if get_world_size() > 1:
            all_reduce(sums)
            all_reduce(seen)
        return sums[seen > 0].sqrt().mean(0)

    def _device(self):
        return self._adapters[0][1].index.device

    # -- merge --------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self):
        if self.mode != 'mlp':
            raise TypeError("SCT mode='attn' acts on the residual stream and cannot be merged; "
                            "mode='mlp' can")
        super().merge()

    def fold(self):
        self._check()
        for block, _ in self._adapters:
            site = block.sites['fc2']
            if site.bias is None:
                raise ValueError('cannot fold SCT into fc2: the linear has no bias of its own')
        for block, adapter in self._adapters:
            site = block.sites['fc2']
            idx = adapter.index
            mix = torch.eye(self.top_n, device=idx.device) + adapter.weight
            weight, bias = site.weight, site.bias
            new_w, new_b = weight.clone(), bias.clone()
            new_w[idx] = mix @ weight[idx]
            new_b[idx] = mix @ bias[idx] + adapter.bias
            site.merge_(new_w - weight, new_b - bias)

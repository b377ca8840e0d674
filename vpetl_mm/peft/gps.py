"""GPS: gradient-based parameter selection.

Zhang et al., "Gradient-based Parameter Selection for Efficient Fine-Tuning", CVPR 2024.
"""
from typing import Dict, Iterable, List, Optional, Sequence

import torch
from mmengine.dist import all_reduce, get_world_size
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks
from .selection import class_labels, supervised_contrastive_loss


def pooled_features(model: nn.Module, inputs: Tensor) -> Tensor:
    """``(B, D)`` features of ``model.extract_feat(inputs)``: the last output, spatial /
    temporal dimensions averaged (mmpretrain classifiers and mmaction recognizers)."""
    if not hasattr(model, 'extract_feat'):
        raise TypeError(f'GPS selection needs a classifier with extract_feat; '
                        f'{type(model).__name__} has none')
    feats = model.extract_feat(inputs)
    if isinstance(feats, tuple) and len(feats) == 2 and isinstance(feats[1], dict):
        feats = feats[0]  # mmaction: (features, auxiliary losses)
    while isinstance(feats, (tuple, list)):
        feats = feats[-1]
    return feats.flatten(2).mean(-1) if feats.dim() > 2 else feats


@PEFT_METHODS.register_module()
class GPS(PEFTMethod):
    """Sparse fine-tuning of the frozen weights: per output neuron, the ``connections`` input
    weights with the largest gradient magnitude are trained, plus every bias of those layers.

    Tuned layers: ``qkv``, ``proj``, ``fc1``, ``fc2`` of the selected blocks and the
    patch-embedding convolution (its weight read as ``(out, in x k x k)``). Norms, position
    embeddings and class tokens stay frozen.

    Before training, one pass over the training data (:class:`vpetl_mm.PEFTSelectionHook`)
    accumulates the gradients of a supervised contrastive loss on the backbone's pooled
    features (one view per sample: positives are the other samples of the same class in the
    batch, temperature ``temperature``) and keeps, per row of each weight, the ``connections``
    entries with the largest ``|sum of gradients|``. The selection is stored as index buffers
    ``peft.<name>.connections_<i>`` with the trainable weights, so a resumed run keeps it.

    Training: the whole weights are in the optimizer from the start (``requires_grad``); a
    gradient hook zeroes every unselected entry, so with weight decay 0 (the authors' Adam
    setting; checked before training) those entries never move. The update is the weights
    themselves, so :meth:`merge` only removes the hooks. Deviation: the authors compute the
    contrastive loss on two augmented views per image; here the batch's own samples are the
    views.

    Args:
        connections (int): trained inputs per output neuron (``times_para``; 1, 2 on
            patch_camelyon). Defaults to 1.
        temperature (float): contrastive temperature. Defaults to 0.07.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, connections=1: 83,712 weight entries + 83,712 bias entries = 167,424 tuned
    elements (:meth:`tuned_elements`); the optimizer holds the 85M entries of those tensors.
    """
    paper = ('Zhang et al., Gradient-based Parameter Selection for Efficient Fine-Tuning, '
             'CVPR 2024')
    placement = ('selected entries of every qkv / proj / fc1 / fc2 / patch-embedding weight '
                 '(per output neuron, by gradient on the training data) and their biases')
    mergeable = True
    needs_selection = True

    def __init__(self, connections: int = 1, temperature: float = 0.07,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if connections < 1:
            raise ValueError(f'GPS connections must be >= 1, got {connections}')
        self.connections = connections
        self.temperature = temperature
        self.blocks = blocks
        self._weights: List[nn.Parameter] = []  # sparsely tuned (their gradients masked)
        self._biases: List[nn.Parameter] = []
        self._selecting = False
        self.register_buffer('selected', torch.tensor(False))

    def attach(self, backbone, spec):
        layers = []
        for block in select_blocks(spec, self.blocks, 'GPS blocks'):
            for role in ('qkv', 'proj', 'fc1', 'fc2'):
                site = block.sites[role].root()
                layers.append((getattr(site.owner, site.weight_name),
                               getattr(site.owner, site.bias_name, None)
                               if site.bias_name else None))
        patch = spec.patch_projection()
        layers.append((patch.weight, patch.bias))
        for i, (weight, bias) in enumerate(layers):
            if weight.shape[1:].numel() < self.connections:
                raise ValueError(f'GPS connections={self.connections} exceeds the '
                                 f'{weight.shape[1:].numel()} inputs of a weight '
                                 f'{tuple(weight.shape)}')
            self.register_buffer(f'connections_{i}', torch.full(
                (weight.shape[0], self.connections), -1, dtype=torch.long,
                device=weight.device))
            spec.tune(weight)
            spec.on_gradient(weight, lambda g, i=i: self._mask(g, i))
            self._weights.append(weight)
            if bias is not None:
                spec.tune(bias)
                self._biases.append(bias)

    def _mask(self, grad: Tensor, i: int) -> Tensor:
        if self._selecting:
            return grad
        if not self.is_selected():
            raise RuntimeError('GPS trains before its selection pass: add '
                               "dict(type='vpetl_mm.PEFTSelectionHook') to custom_hooks (the "
                               'vpetl_mm default_runtime has it) or load a checkpoint of a run '
                               'that made the selection')
        rows = grad.reshape(grad.shape[0], -1)
        mask = torch.zeros_like(rows).scatter_(1, getattr(self, f'connections_{i}'), 1)
        return (rows * mask).view_as(grad)

    def is_selected(self) -> bool:
        return bool(self.selected)

    def tuned_parameters(self) -> Dict[nn.Parameter, int]:
        tuned = {w: w.shape[0] * self.connections for w in self._weights}
        tuned.update((b, b.numel()) for b in self._biases)
        return tuned

    def select(self, model: nn.Module, batches: Iterable[dict]) -> str:
        model.eval()
        weights = self._weights
        totals = [torch.zeros_like(w) for w in weights]
        self._selecting = True
        seen = 0
        try:
            for data in batches:
                labels = class_labels(data['data_samples']).to(weights[0].device)
                with torch.enable_grad():
                    feats = pooled_features(model, data['inputs'])
                    if feats.shape[0] != labels.shape[0]:
                        raise ValueError(f'GPS selection: {feats.shape[0]} feature rows for '
                                         f'{labels.shape[0]} labels')
                    loss = supervised_contrastive_loss(feats, labels, self.temperature)
                    grads = torch.autograd.grad(loss, weights, allow_unused=True)
                for total, g in zip(totals, grads):
                    if g is not None:
                        total += g
                seen += 1
        finally:
            self._selecting = False
        if not seen:
            raise RuntimeError('GPS selection pass saw no data: the training dataloader is empty')
        with torch.no_grad():
            for i, total in enumerate(totals):
                if get_world_size() > 1:
                    all_reduce(total)
                score = total.abs().reshape(total.shape[0], -1)
                getattr(self, f'connections_{i}').copy_(
                    torch.topk(score, self.connections, dim=1).indices)
            self.selected.fill_(True)
        return (f'GPS selected {self.connections} input(s) per neuron in {len(weights)} '
                f'weights from {seen} batches: {self.tuned_elements():,} tuned elements')

    def check_optimizer(self, optim_wrapper) -> None:
        ids = {id(w) for w in self._weights}
        for k, group in enumerate(optim_wrapper.optimizer.param_groups):
            if group.get('weight_decay', 0) and any(id(p) in ids for p in group['params']):
                raise ValueError(
                    f'GPS: optimizer param group {k} has weight_decay={group["weight_decay"]} '
                    'on the sparsely tuned weights; decay would move their unselected entries. '
                    'Set optim_wrapper.optimizer.weight_decay=0 (the authors use Adam, wd 0) or '
                    'exempt these weights through optim_wrapper.paramwise_cfg.')


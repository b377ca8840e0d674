"""The base class of every PEFT method."""
import logging
from typing import Dict, Iterable, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from torch import nn

from vpetl_mm.models.specs.record import AttachRecord, recording


class PEFTMethod(nn.Module):
    """A parameter-efficient method, attached once to a frozen backbone through its spec.

    Life cycle: the method is built from its config (``PEFT_METHODS``), then
    :func:`vpetl_mm.models.PEFTBackbone` freezes the backbone and calls :meth:`attach_to`, which
    runs :meth:`attach` while the spec records every change (:attr:`record`). The method adds its
    modules either inside the backbone through ``spec.add_module`` (next to the weight they
    adapt, e.g. ``layers.0.attn.qkv.lora_q``) or in itself; the method object lives at
    ``backbone.peft.methods.<name>``, so modules it owns get keys ``peft.methods.<name>.*``.
    Parameters it creates are trainable; frozen backbone tensors it wants trained (full
    fine-tuning, bias tuning, ...) it passes to ``spec.tune``. It reaches the backbone only
    through the spec's hook points, so the record can disable, detach and reattach it, and
    :meth:`merge` needs only :meth:`fold`.

    Class attributes:
        mergeable (bool): whether :meth:`merge` folds the method exactly into the frozen weights,
            leaving a plain backbone with the same outputs.
        unmergeable (bool): whether the fold is an addition that :meth:`unmerge` subtracts
            again (LoRA, FacT, KAdaptation), putting the method back as it was.
        paper (str): the reference, for the generated docs.
        placement (str): where it attaches, in a few words, for the generated docs.
        needs_selection (bool): the method picks what it tunes from a pass over training data
            before training (:meth:`select`, run by ``vpetl_mm.PEFTSelectionHook``).
    """
    mergeable: bool = False
    unmergeable: bool = False
    paper: str = ''
    placement: str = ''
    needs_selection: bool = False

    def is_selected(self) -> bool:
        """Whether the selection :meth:`select` makes is in place (run, or loaded)."""
        return True

    def select(self, model: nn.Module, batches: Iterable[dict]) -> str:
        """Pick what to tune from ``batches`` (pre-processed ``dict(inputs, data_samples)``) run
        through ``model`` (the whole toolbox model, unwrapped); returns a one-line summary for
        the log. Only for ``needs_selection``."""
        raise TypeError(f'{type(self).__name__} has no selection pass')

    def check_optimizer(self, optim_wrapper) -> None:
        """Refuse optimizer settings the method cannot train under (called before training)."""

    def tuned_parameters(self) -> Optional[Dict[nn.Parameter, int]]:
        """For methods that update a sparse subset of their ``requires_grad`` tensors: each such
        tensor mapped to the number of its elements training can change; ``None`` otherwise."""
        return None

    def tuned_elements(self) -> Optional[int]:
        """Backbone elements training can change, where fewer than the ``requires_grad``
        parameters hold (see :meth:`tuned_parameters`); ``None`` otherwise."""
        tuned = self.tuned_parameters()
        return None if tuned is None else sum(tuned.values())

    def attach(self, backbone: nn.Module, spec) -> None:
        """Add the method to ``backbone`` through ``spec`` (implemented by every method)."""
        raise NotImplementedError(f'{type(self).__name__}.attach is missing')

    def attach_to(self, backbone: nn.Module, spec, name: str = '') -> None:
        """:meth:`attach`, recording what it does in :attr:`record`."""
        self.record = AttachRecord(name or type(self).__name__)
        with recording(self.record):
            self.attach(backbone, spec)

    def begin_forward(self) -> None:
        """Called before every backbone forward; methods with per-forward state reset it."""

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the method into the frozen weights (:meth:`fold`) and take its modules and hooks
        off; backbone tensors it trained keep their values."""
        if not self.mergeable:
            raise TypeError(f'{type(self).__name__} cannot be merged into the backbone weights: '
                            'its update is not linear in them')
        self.fold()
        self.record.settle(keep=self.unmergeable)

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`: subtract the fold (:meth:`unfold`) and put the modules and hooks
        back; the outputs are the merged ones up to float rounding."""
        if not self.unmergeable:
            raise TypeError(f'{type(self).__name__} cannot be unmerged: its fold is not an '
                            'addition to subtract')
        self.unfold()
        self.record.reattach()

    def unfold(self) -> None:
        """Subtract from the frozen weights what :meth:`fold` added (unmergeable methods)."""
        raise TypeError(f'{type(self).__name__} has no unfold')

    def fold(self) -> None:
        """Add the method's update to the frozen weights it adapts, checking first that every
        fold is possible (a refused merge leaves the model untouched). Methods that only train
        backbone tensors in place have nothing to fold."""


def renamed_argument(method: str, old: str, old_value, new: str, new_value):
    """The value of argument ``new`` of ``method``, taken from its former name ``old`` when a
    config still passes that (with a deprecation warning in the log)."""
    if old_value is None:
        return new_value
    print_log(f'{method}: the argument {old}= is now called {new}= ({old}={old_value} used); '
              f'rename it in the config', logger='current', level=logging.WARNING)
    return old_value


def select_blocks(spec, blocks: Optional[Sequence[int]], key: str = 'blocks') -> List:
    """The spec's :class:`BlockInfo` for global indices ``blocks`` (``None``: all blocks).

    Negative indices count from the end. An index out of range raises a ValueError naming
    ``key`` (the config key it came from).
    """
    if blocks is None:
        return list(spec.blocks)
    n = len(spec.blocks)
    chosen = []
    for i in blocks:
        if not -n <= i < n:
            raise ValueError(f'{key}={list(blocks)}: block {i} is out of range for a backbone '
                             f'with {n} blocks')
        chosen.append(spec.blocks[i % n])
    return chosen

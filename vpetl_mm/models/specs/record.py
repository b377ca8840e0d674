"""What a PEFT method attached to a backbone, kept so that it can be taken off and put back.

Every change a method makes to a backbone goes through its spec (hooks, added modules, linear-site
deltas, key / value and per-head transforms, backbone tensors it trains). The spec records each
change as an :class:`Attachment` in the :class:`AttachRecord` that is current while the method
attaches (:meth:`BackboneSpec.recording`). The record can then

* :meth:`~AttachRecord.disable` the method: its hooks and deltas stop acting and the backbone
  tensors it trains show their original values again; its modules stay where they are (the state
  dict keeps its keys); :meth:`~AttachRecord.enable` puts the behaviour back;
* :meth:`~AttachRecord.detach` it: everything is taken off, modules included, leaving the
  backbone as it was before; :meth:`~AttachRecord.reattach` restores it with the same modules and
  trained values (switching between method sets).
"""
import contextlib
from typing import Callable, Iterator, List, Optional

import torch
from torch import Tensor, nn

_CURRENT: List['AttachRecord'] = []


def current_record() -> Optional['AttachRecord']:
    """The record changes are written to now (``None`` outside :func:`recording`)."""
    return _CURRENT[-1] if _CURRENT else None


@contextlib.contextmanager
def recording(record: 'AttachRecord') -> Iterator['AttachRecord']:
    """Record every attachment made inside the ``with`` block into ``record``."""
    _CURRENT.append(record)
    try:
        yield record
    finally:
        _CURRENT.pop()


class Attachment:
    """One change to a backbone that can be undone (:meth:`remove`) and redone (:meth:`apply`).

    ``structural`` changes (added modules) stay while a method is disabled; behavioural ones
    (hooks, deltas, trained values) are taken off.
    """
    structural = False

    def __init__(self):
        self.applied = True

    def apply(self) -> None:
        if not self.applied:
            self._apply()
            self.applied = True

    def remove(self) -> None:
        if self.applied:
            self._remove()
            self.applied = False

    def _apply(self) -> None:
        raise NotImplementedError

    def _remove(self) -> None:
        raise NotImplementedError


class HookAttachment(Attachment):
    """A torch hook: ``register()`` registers it and returns its removable handle."""

    def __init__(self, register: Callable[[], 'torch.utils.hooks.RemovableHandle']):
        super().__init__()
        self._register = register
        self._handle = register()

    def _apply(self):
        self._handle = self._register()

    def _remove(self):
        self._handle.remove()
        self._handle = None


class CallAttachment(Attachment):
    """A change made by ``add()`` and undone by ``undo()`` (an entry in a list the spec
    reads, a delta of a linear site); ``add`` runs when this is built."""

    def __init__(self, add: Callable[[], None], undo: Callable[[], None]):
        super().__init__()
        self._add = add
        self._undo = undo
        add()

    def _apply(self):
        self._add()

    def _remove(self):
        self._undo()


class AttributeAttachment(Attachment):
    """``module.<name> = value`` set on an instance (a replaced forward); removal restores what
    the instance had (usually nothing, so the class attribute shows again)."""

    def __init__(self, module: nn.Module, name: str, value):
        super().__init__()
        self.module, self.name, self.value = module, name, value
        self._before = module.__dict__.get(name, _MISSING)
        object.__setattr__(module, name, value)

    def _apply(self):
        self._before = self.module.__dict__.get(self.name, _MISSING)
        object.__setattr__(self.module, self.name, self.value)

    def _remove(self):
        if self._before is _MISSING:
            self.module.__dict__.pop(self.name, None)
        else:
            object.__setattr__(self.module, self.name, self._before)


_MISSING = object()


def module_device(module: nn.Module) -> Optional[torch.device]:
    """The device of ``module``'s first parameter or buffer (``None`` when it has none)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None


class ModuleAttachment(Attachment):
    """A method module added to a backbone module as ``parent.<name>``; put back on the device
    ``parent`` is on (a backbone moved while the method was detached)."""
    structural = True

    def __init__(self, parent: nn.Module, name: str, module: nn.Module):
        super().__init__()
        self.parent, self.name, self.module = parent, name, module
        self._add()

    def _add(self):
        if self.name in self.parent._modules or hasattr(self.parent, self.name):
            raise ValueError(f'cannot attach {type(self.module).__name__} as '
                             f'{type(self.parent).__name__}.{self.name}: the name is taken '
                             '(two methods writing the same module?)')
        device = module_device(self.parent)
        if device is not None:
            self.module.to(device)
        self.parent.add_module(self.name, self.module)

    def _apply(self):
        self._add()

    def _remove(self):
        delattr(self.parent, self.name)


class TunedTensor(Attachment):
    """A backbone tensor a method trains in place (full fine-tuning, bias tuning, ...).

    Its value at attach time is kept on the CPU. Removing the attachment stores the trained value
    aside and writes the original back (frozen); applying it again writes the trained value back
    (trainable). For a tensor on the meta device (shape-only builds) nothing is kept.
    """

    def __init__(self, tensor: Tensor):
        super().__init__()
        self.tensor = tensor
        self.original = None if tensor.is_meta else tensor.detach().to('cpu', copy=True)
        self._trained: Optional[Tensor] = None
        tensor.requires_grad_(True)

    @torch.no_grad()
    def _apply(self):
        if self._trained is not None:
            self.tensor.copy_(self._trained)
            self._trained = None
        self.tensor.requires_grad_(True)

    @torch.no_grad()
    def _remove(self):
        if self.original is None:
            raise RuntimeError('cannot restore a tensor built on the meta device')
        self._trained = self.tensor.detach().clone()
        self.tensor.copy_(self.original)
        self.tensor.requires_grad_(False)

    def forget(self) -> None:
        """Drop the trained value kept aside (the method is detached for good)."""
        self._trained = None


class AttachHandle:
    """What a spec hook point returns: :meth:`remove` takes the attachments off for good (they
    leave the record they were written to)."""

    def __init__(self, entries: List[Attachment], record: Optional['AttachRecord'] = None):
        self.entries = entries
        self.record = record

    def remove(self) -> None:
        for entry in reversed(self.entries):
            entry.remove()
            if self.record is not None:
                self.record.discard(entry)


class AttachRecord:
    """The attachments of one method, in the order they were made."""

    def __init__(self, name: str = ''):
        self.name = name
        self.entries: List[Attachment] = []
        self.enabled = True
        self.attached = True

    def keep(self, *entries: Attachment) -> AttachHandle:
        self.entries.extend(entries)
        return AttachHandle(list(entries), self)

    def discard(self, entry: Attachment) -> None:
        self.entries = [e for e in self.entries if e is not entry]

    def _off(self) -> None:
        for entry in reversed(self.entries):
            if not entry.structural:
                entry.remove()

    def _on(self) -> None:
        for entry in self.entries:
            if not entry.structural:
                entry.apply()

    def disable(self) -> None:
        """Take off the behaviour (hooks, deltas, trained values); modules stay."""
        self._off()
        self.enabled = False

    def enable(self) -> None:
        """Put the behaviour back (only while attached)."""
        if not self.attached:
            raise RuntimeError(f'{self.name}: detached; reattach it first')
        self._on()
        self.enabled = True

    def detach(self) -> None:
        """Take everything off: the backbone is as it was before the method attached. Whether
        the method is enabled is kept for :meth:`reattach`."""
        self._off()
        for entry in reversed(self.entries):
            entry.remove()
        self.attached = False

    def reattach(self) -> None:
        """Put the modules back, and the behaviour if the method is enabled."""
        for entry in self.entries:
            if entry.structural:
                entry.apply()
        self.attached = True
        if self.enabled:
            self._on()

    def settle(self, keep: bool = False) -> None:
        """After a merge: take off hooks, deltas and modules; backbone tensors the method
        trained keep their trained values (frozen). The record is emptied, or with ``keep``
        kept for :meth:`reattach` (an unmerge)."""
        for entry in reversed(self.entries):
            if isinstance(entry, TunedTensor):
                entry.tensor.requires_grad_(False)
            else:
                entry.remove()
        if not keep:
            self.entries = []
        self.attached = False

    def forget(self) -> None:
        """The method is gone for good: drop trained values kept aside and every entry."""
        for entry in self.entries:
            if isinstance(entry, TunedTensor):
                entry.forget()
        self.entries = []


def keep(*entries: Attachment) -> AttachHandle:
    """Write ``entries`` (already applied) to the current record, if any; their handle."""
    record = current_record()
    if record is None:
        return AttachHandle(list(entries))
    return record.keep(*entries)

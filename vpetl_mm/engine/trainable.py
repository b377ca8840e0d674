"""Which weights of a model train, and how many there are."""
from collections import OrderedDict
from typing import Dict, List, Tuple

from torch import nn


def trainable_state_dict(model: nn.Module, state_dict: Dict = None) -> OrderedDict:
    """The entries of ``state_dict`` (default: ``model.state_dict()``) that training changes.

    These are the parameters with ``requires_grad``, the buffers of modules that own such a
    parameter (e.g. the running statistics of a trainable norm) and the buffers of the PEFT
    methods themselves (``...peft.methods.<name>.*``: state such as selected indices). Everything
    else is rebuilt from the config and the pretrained checkpoint.
    """
    state_dict = model.state_dict() if state_dict is None else state_dict
    keep = set()
    for module_name, module in model.named_modules():
        params = list(module.named_parameters(recurse=False))
        if not any(p.requires_grad for _, p in params):
            continue
        prefix = f'{module_name}.' if module_name else ''
        keep.update(prefix + n for n, p in params if p.requires_grad)
        keep.update(prefix + n for n, _ in module.named_buffers(recurse=False))
    for name, _ in model.named_buffers():
        if name.startswith('peft.methods.') or '.peft.methods.' in name:
            keep.add(name)
    return OrderedDict((k, v) for k, v in state_dict.items() if k in keep)


def _plain(obj):
    """Configs compared as plain Python (tuples and lists alike)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def check_peft_configs(saved: List, current: List, source: str = 'the checkpoint') -> None:
    """Raise ``ValueError`` when the PEFT method configs stored with a checkpoint
    (``meta['peft']``) differ from the model's: its weights would load into other modules."""
    if _plain(saved) != _plain(current):
        raise ValueError(f'{source} was trained with PEFT methods {saved}, but the model is '
                         f'configured with {current}')


def tuned_counts(model: nn.Module) -> Dict[int, int]:
    """``id(parameter) -> elements training can change`` for the tensors that sparse PEFT
    methods (GPS) update only in part (``PEFTMethod.tuned_parameters``)."""
    from vpetl_mm.peft.base import PEFTMethod
    counts = {}
    for module in model.modules():
        if isinstance(module, PEFTMethod):
            counts.update((id(p), n) for p, n in (module.tuned_parameters() or {}).items())
    return counts


def trainable_elements(model: nn.Module) -> int:
    """Elements of ``model``'s parameters that training changes, as :func:`parameter_summary`
    counts them (a sparsely tuned tensor by its tuned elements)."""
    return parameter_summary(model)[-1][1]


def parameter_summary(model: nn.Module, depth: int = 1) -> List[Tuple[str, int, int]]:
    """``(name, trainable, total)`` per module at ``depth`` (1: backbone, neck, head, ...),
    followed by a ``'total'`` row. Shared parameters count once. A tensor that a sparse method
    updates in part counts its tuned elements as trainable (GPS: the selected entries)."""
    rows: Dict[str, List[int]] = OrderedDict()
    seen = set()
    tuned = tuned_counts(model)
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        key = '.'.join(name.split('.')[:depth])
        row = rows.setdefault(key, [0, 0])
        row[1] += param.numel()
        if param.requires_grad:
            row[0] += tuned.get(id(param), param.numel())
    out = [(k, t, n) for k, (t, n) in rows.items()]
    out.append(('total', sum(r[1] for r in out), sum(r[2] for r in out)))
    return out

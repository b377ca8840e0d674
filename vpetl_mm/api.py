"""Python API for models that already exist, in the spirit of HF peft's ``get_peft_model``.

A model built and loaded through a toolbox's own API (``mmpretrain.get_model``,
``mmdet.apis.init_detector``, ``mmseg.apis.init_model``, ``mmaction.apis.init_recognizer``) or a
bare backbone module gets PEFT methods attached in place::

    model = mmpretrain.get_model(cfg, pretrained='classifier.pth')
    model = vpetl_mm.get_peft_model(model, dict(type='LoRA', rank=8, alpha=16))
    ...                                                    # train: only the method and head move
    vpetl_mm.save_trainable(model, 'lora.pth')             # what TrainableCheckpointHook writes
    vpetl_mm.load_trainable(other_model, 'lora.pth')       # into a model wrapped the same way
    vpetl_mm.save_merged(model, 'merged.pth')              # a plain checkpoint of the toolbox

The wrapped backbone keeps every weight it had (nothing is re-initialised) and its state-dict keys;
the method's parameters are added under their own names.
"""
import io
from typing import Optional, Sequence, Union

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn

from vpetl_mm.compat.fileio import atomic_write_bytes
from vpetl_mm.engine.hooks.summary import format_summary
from vpetl_mm.engine.trainable import check_peft_configs, trainable_state_dict
from vpetl_mm.models import PEFTBackbone, get_peft_state
from vpetl_mm.models.peft_backbone import read_checkpoint

MethodCfg = Union[dict, Sequence[dict]]


def _backbone_of(model: nn.Module, backbone_attr: str):
    """``(owner, attribute)`` of the backbone inside a toolbox model, or ``(None, None)`` when
    ``model`` is a bare backbone."""
    inner = getattr(model, backbone_attr, None)
    if isinstance(inner, nn.Module):
        return model, backbone_attr
    return None, None


def get_peft_model(model: nn.Module, method: MethodCfg, *, spec: Optional[str] = None,
                   backbone_attr: str = 'backbone', verbose: bool = True) -> nn.Module:
    """Attach ``method`` to the backbone of ``model`` in place, freezing the backbone.

    Args:
        model (nn.Module): a built toolbox model with a ``backbone`` attribute (an mmpretrain
            ``ImageClassifier``, an mmaction recognizer, an mmseg segmentor, an mmdet detector)
            or a bare backbone. Its weights are kept as they are.
        method (dict | list[dict]): PEFT method config(s), e.g. ``dict(type='LoRA', rank=8)``;
            a list composes methods.
        spec (str, optional): a registered backbone spec; chosen from the backbone's class
            when omitted.
        backbone_attr (str): the attribute that holds the backbone in a toolbox model.
        verbose (bool): log the trainable / total parameter table.

    Returns:
        nn.Module: ``model`` itself. Every backbone weight is frozen; the method's parameters
        train; the rest of a toolbox model (neck, heads) keeps its ``requires_grad``.
    """
    if method is None:
        raise ValueError("get_peft_model needs a method, e.g. dict(type='LoRA', rank=8); use "
                         "dict(type='LinearProbe') to only freeze the backbone")
    owner, attr = _backbone_of(model, backbone_attr)
    target = getattr(owner, attr) if owner is not None else model
    wrapped = PEFTBackbone(target, method=method, spec=spec)
    if owner is not None:
        setattr(owner, attr, wrapped)
    if verbose:
        print_log('Trainable parameters:\n' + format_summary(model),
                  logger=MMLogger.get_current_instance())
    return model


def print_trainable_parameters(model: nn.Module, depth: int = 1) -> str:
    """Print (and return) trainable / total parameters per module of ``model`` at ``depth``."""
    table = format_summary(model, depth)
    print(table)
    return table


def _peft_configs(model: nn.Module):
    states = get_peft_state(model)
    if not states:
        raise ValueError(f'{type(model).__name__} carries no PEFT method: call '
                         'vpetl_mm.get_peft_model(model, method) first')
    return [s.method_cfgs for s in states]


def _save(obj: dict, path: str) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def save_trainable(model: nn.Module, path: str) -> None:
    """Write the trainable weights of ``model`` (PEFT parameters, head, ...) to ``path``.

    The file holds ``{'state_dict': ..., 'meta': {'peft': [method configs]}}``, the layout
    ``TrainableCheckpointHook`` gives training checkpoints, so ``tools/test.py`` and
    :func:`load_trainable` read either. Written atomically.
    """
    _save({'state_dict': trainable_state_dict(model),
           'meta': {'peft': _peft_configs(model)}}, path)


def load_trainable(model: nn.Module, path: str) -> nn.Module:
    """Load trainable weights written by :func:`save_trainable` or a training run into ``model``.

    ``model`` must carry the same PEFT methods as the file (checked against ``meta['peft']``).
    Every trainable tensor of ``model`` must be in the file and every tensor of the file must
    be one of ``model``'s: either mismatch raises a ``KeyError`` naming the keys. The frozen
    weights are not touched.
    """
    ckpt = read_checkpoint(path, 'checkpoint')
    state = ckpt.get('state_dict', ckpt)
    saved = ckpt.get('meta', {}).get('peft')
    if saved is not None:
        check_peft_configs(saved, _peft_configs(model), path)
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    missing = [k for k in trainable_state_dict(model) if k not in state]
    if unexpected or missing:
        configs = _peft_configs(model)
        origin = ('' if saved is not None else
                  " (the file records no meta['peft'] to compare methods with)")
        raise KeyError(f'{path} does not fit the model with PEFT methods {configs}: the '
                       f'model\'s trainable {missing[:4]} ({len(missing)} missing) are not in '
                       f'the file and its {unexpected[:4]} ({len(unexpected)}) belong to no '
                       'module of the model: was it trained with another method, backbone or '
                       f'head?{origin}')
    model.load_state_dict(state, strict=False)
    return model


@torch.no_grad()
def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold every PEFT method of ``model`` into its frozen weights, in place.

    The backbone then computes what it computed with the methods attached, with the plain
    backbone's modules and state-dict keys only. Raises ``TypeError`` (model unchanged) when a
    method cannot be merged exactly.
    """
    states = get_peft_state(model)
    blocking = {n for s in states for n, m in s.methods.items() if not m.mergeable}
    if blocking:
        raise TypeError(f'cannot merge: method(s) {sorted(blocking)} are not mergeable; save '
                        'the trainable weights with save_trainable instead')
    for state in states:
        state.merge()
    return model


def save_merged(model: nn.Module, path: str, meta: Optional[dict] = None) -> None:
    """Merge ``model`` (:func:`merge_and_unload`) and write ``{'state_dict', 'meta'}`` to
    ``path`` with the plain model's keys, loadable by the toolbox without vpetl_mm. Atomic."""
    merge_and_unload(model)
    _save({'state_dict': dict(model.state_dict()), 'meta': dict(meta or {})}, path)

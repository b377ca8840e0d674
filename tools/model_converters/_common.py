"""Shared by the converter scripts: load a converter module by path, find the state dict in a
checkpoint, write atomically.

The scripts run without the OpenMMLab toolboxes or the ``vpetl_mm`` package being importable, so
the converter modules under ``vpetl_mm/models/converters/`` (torch and numpy only) are loaded
from their files.
"""
import importlib.util
import io
import os.path as osp

import torch

_PACKAGE = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'vpetl_mm')


def _load_file(relpath, name):
    """Import ``vpetl_mm/<relpath>`` by path as module ``name``, skipping the package
    ``__init__``s."""
    spec = importlib.util.spec_from_file_location(name, osp.normpath(osp.join(_PACKAGE,
                                                                               relpath)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_converter(name):
    """Import ``vpetl_mm/models/converters/<name>.py`` by path."""
    return _load_file(osp.join('models', 'converters', f'{name}.py'),
                      f'_vpetl_mm_{name}_converter')


_ATOMIC = _load_file(osp.join('compat', 'atomic_file.py'), '_vpetl_mm_atomic_file')


def unwrap_state_dict(state, path):
    """The state dict of a loaded checkpoint: ``state`` itself or the one under ``model`` /
    ``state_dict`` / ``module`` (DeepSpeed's, e.g. VideoMAE's checkpoints); a ``ValueError``
    naming ``path`` for anything else."""
    for wrapper in ('model', 'state_dict', 'module'):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            return state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f'{path}: expected a state dict (or one under "model"/"state_dict"), '
                         f'got {type(state).__name__}')
    return state


def save_atomic(obj, dst):
    """``torch.save`` to a temporary file next to ``dst``, then rename it over ``dst`` (the mode
    an ordinary write would give it)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _ATOMIC.atomic_write_bytes(buffer.getvalue(), dst, prefix='.' + osp.basename(dst) + '.')

"""vpetl_mm: parameter-efficient transfer learning for OpenMMLab toolboxes.

Importing the package registers the plugin's models, methods, hooks and datasets in the
``vpetl_mm`` scope and applies the compatibility fixes of :mod:`vpetl_mm.compat`.
"""
import importlib.util

from . import compat  # noqa: F401  (first: fixes must precede toolbox imports)
from . import engine, models, peft  # noqa: F401
from .api import (get_peft_model, load_trainable, merge_and_unload, print_trainable_parameters,
                  save_merged, save_trainable)
from .models import PEFTBackbone, get_peft_state
from .version import __version__

if importlib.util.find_spec('mmpretrain') is not None:
    from . import datasets  # noqa: F401

__all__ = ['PEFTBackbone', 'get_peft_state', 'get_peft_model', 'print_trainable_parameters',
           'save_trainable', 'load_trainable', 'merge_and_unload', 'save_merged', '__version__']

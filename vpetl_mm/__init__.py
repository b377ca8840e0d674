"""vpetl_mm: parameter-efficient transfer learning for OpenMMLab toolboxes.

Importing the package registers the plugin's models, methods, hooks and datasets in the
``vpetl_mm`` scope and applies the compatibility fixes of :mod:`vpetl_mm.compat`.
"""
import importlib.util

from . import compat  # noqa: F401  (first: fixes must precede toolbox imports)
from . import engine, models, peft  # noqa: F401
from .models import PEFTBackbone, get_peft_state
from .version import __version__

if importlib.util.find_spec('mmpretrain') is not None:
    from . import datasets  # noqa: F401

__all__ = ['PEFTBackbone', 'get_peft_state', '__version__']

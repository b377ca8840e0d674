"""Registries of the ``vpetl_mm`` scope.

Each registry is a child of mmengine's root registry of the same kind, so a config whose
``default_scope`` is ``mmpretrain``, ``mmaction``, ``mmseg`` or ``mmdet`` reaches plugin types
through the scope prefix, e.g. ``type='vpetl_mm.PEFTBackbone'``, while every other name keeps
resolving in the downstream toolbox. ``PEFT_METHODS`` holds the methods (``LoRA``, ``DTL``, ...) and
``BACKBONE_SPECS`` the backbone specs; both are plain registries of this package only.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='vpetl_mm',
                  locations=['vpetl_mm.models'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS,
                          scope='vpetl_mm', locations=['vpetl_mm.compat'])
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='vpetl_mm',
                          locations=['vpetl_mm.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='vpetl_mm',
                 locations=['vpetl_mm.engine.hooks'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='vpetl_mm',
                    locations=['vpetl_mm.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS,
                      scope='vpetl_mm', locations=['vpetl_mm.datasets'])

PEFT_METHODS = Registry('peft method', scope='vpetl_mm',
                        locations=['vpetl_mm.peft'])
BACKBONE_SPECS = Registry('backbone spec', scope='vpetl_mm',
                          locations=['vpetl_mm.models.specs'])

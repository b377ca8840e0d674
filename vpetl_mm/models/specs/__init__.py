"""Backbone specs, one module per backbone family (see :mod:`.base`)."""
from .base import (BackboneSpec, BlockInfo, LinearSite, TokenLayout, get_spec)
from .mmaction_swin3d import MMActionSwin3DSpec
from .mmaction_vit import MMActionViTSpec
from .mmpretrain_vit import MMPretrainViTSpec
from .mmseg_vit import MMSegViTSpec
from .openmmlab_swin import OpenMMLabSwinSpec

__all__ = [
    'BackboneSpec', 'BlockInfo', 'LinearSite', 'TokenLayout', 'get_spec',
    'MMPretrainViTSpec', 'OpenMMLabSwinSpec', 'MMActionViTSpec', 'MMActionSwin3DSpec',
    'MMSegViTSpec'
]

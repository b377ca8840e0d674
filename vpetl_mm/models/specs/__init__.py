"""Backbone specs, one module per backbone family (see :mod:`.base`)."""
from .base import (BackboneSpec, BlockInfo, LinearSite, TokenLayout, get_spec)
from .mmpretrain_swin import MMPretrainSwinSpec
from .mmpretrain_vit import MMPretrainViTSpec

__all__ = [
    'BackboneSpec', 'BlockInfo', 'LinearSite', 'TokenLayout', 'get_spec',
    'MMPretrainViTSpec', 'MMPretrainSwinSpec'
]

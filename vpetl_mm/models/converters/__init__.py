"""Converters from published checkpoint layouts to the OpenMMLab backbone layouts."""
from .vit import convert_jax_vit_npz, convert_timm_vit

__all__ = ['convert_jax_vit_npz', 'convert_timm_vit']

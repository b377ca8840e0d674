"""Weight converters from published checkpoint layouts to OpenMMLab backbone layouts.

The modules here depend on torch and numpy only, so ``tools/model_converters`` can use them
without the OpenMMLab toolboxes being importable.
"""
from .swin import is_ms_swin, split_ms_swin
from .vit import (convert_jax_vit_npz, convert_timm_vit, describe, is_openai_clip,
                  split_jax_vit_npz, split_openai_clip, split_timm_vit)

__all__ = [
    'convert_jax_vit_npz', 'convert_timm_vit', 'describe', 'is_openai_clip', 'split_jax_vit_npz',
    'split_openai_clip', 'split_timm_vit', 'is_ms_swin', 'split_ms_swin'
]

"""Rename Microsoft's Swin Transformer (v1) weights to the layout of the OpenMMLab
``SwinTransformer`` (mmpretrain, mmseg and mmdet share it).

The source is the official release (``swin_base_patch4_window7_224_22k.pth`` and relatives: a
state dict under ``model``, keys such as ``layers.2.blocks.5.attn.qkv.weight``, the patch merging
at the end of stages 0-2 as ``layers.{i}.downsample``). The mapping is the one of mmseg's
``swin2mmseg.py`` and mmdet's ``swin_converter``:

* ``layers.{i}`` -> ``stages.{i}``; ``attn.*`` -> ``attn.w_msa.*``; ``mlp.fc1`` / ``mlp.fc2`` ->
  ``ffn.layers.0.0`` / ``ffn.layers.1``; ``patch_embed.proj`` -> ``patch_embed.projection``;
* the patch merging's ``reduction`` and ``norm`` are permuted from the concatenation order of the
  original ``(x0, x1, x2, x3)`` = positions ``(0,0), (1,0), (0,1), (1,1)`` to ``nn.Unfold``'s
  channel-major order;
* the final ``norm`` becomes ``norm{last stage}`` (the OpenMMLab backbone names one norm per out
  index; the default ``out_indices=(last,)``);
* ``head.*`` and the ``attn_mask`` buffers are left out (the backbone computes its masks).

The converted weights reproduce the source network (checked against timm's Swin reading the same
file, ``tests/test_converters/test_swin_converter.py``).
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Tuple

import torch

_STAGE = re.compile(r'layers\.(\d+)\.')
_RENAMES = (('.attn.', '.attn.w_msa.'), ('.mlp.fc1.', '.ffn.layers.0.0.'),
            ('.mlp.fc2.', '.ffn.layers.1.'))


def is_ms_swin(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` has the official Swin layout."""
    return any(k.startswith('layers.0.blocks.0.attn.qkv') for k in state_dict)


def _unfold_order_weight(weight: torch.Tensor) -> torch.Tensor:
    out_channels, in_channels = weight.shape
    weight = weight.reshape(out_channels, 4, in_channels // 4)[:, [0, 2, 1, 3]]
    return weight.transpose(1, 2).reshape(out_channels, in_channels)


def _unfold_order_vector(vector: torch.Tensor) -> torch.Tensor:
    channels = vector.shape[0]
    return vector.reshape(4, channels // 4)[[0, 2, 1, 3]].transpose(0, 1).reshape(channels)


def split_ms_swin(
    state_dict: Mapping[str, torch.Tensor]
) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, torch.Tensor]]:
    """Rename an official Swin state dict; also return what was left out.

    Returns:
        ``(backbone, dropped)``: ``backbone`` in OpenMMLab names (float32 contiguous copies),
        ``dropped`` the ``head.*`` and ``attn_mask`` entries under their original names.

    Raises:
        ValueError: for a key that is not part of an official Swin v1, named.
    """
    stages = [int(m.group(1)) for k in state_dict for m in [_STAGE.match(k)] if m]
    if not stages:
        raise ValueError('split_ms_swin: no layers.{i}.* keys: not an official Swin state dict')
    last = max(stages)
    backbone, dropped = OrderedDict(), {}
    for key, value in state_dict.items():
        if key.startswith('head') or key.endswith('attn_mask'):
            dropped[key] = value
            continue
        value = value.detach().to('cpu', torch.float32, copy=True).contiguous()
        if key.startswith('patch_embed.'):
            new = key.replace('patch_embed.proj.', 'patch_embed.projection.')
        elif key.startswith('norm.'):
            new = f'norm{last}.' + key[len('norm.'):]
        elif _STAGE.match(key):
            new = 'stages.' + key[len('layers.'):]
            for old, replacement in _RENAMES:
                new = new.replace(old, replacement)
            if '.downsample.reduction.weight' in new:
                value = _unfold_order_weight(value)
            elif '.downsample.norm.' in new:
                value = _unfold_order_vector(value)
        else:
            raise ValueError(f'split_ms_swin: unknown key {key!r}: not part of an official '
                             'Swin Transformer')
        backbone[new] = value
    return backbone, dropped

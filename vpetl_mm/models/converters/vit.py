"""ViT checkpoints (Google JAX ``.npz``, timm ``.pth``) -> mmpretrain ``VisionTransformer`` keys.

The converted weights reproduce the source model with mmpretrain's
``VisionTransformer(..., qkv_bias=True, norm_cfg=dict(type='LN', eps=1e-6), final_norm=True)``
(the in21k ViTs use LayerNorm eps 1e-6 and a bias in the patch embedding). Classifier heads and
``pre_logits`` are dropped: a transfer task brings its own head.
"""
import re
from collections import OrderedDict
from typing import Mapping, Tuple

import numpy as np
import torch

_TIMM_BLOCK = {
    'norm1': 'ln1', 'attn.qkv': 'attn.qkv', 'attn.proj': 'attn.proj', 'norm2': 'ln2',
    'mlp.fc1': 'ffn.layers.0.0', 'mlp.fc2': 'ffn.layers.1',
}
_TIMM_TOP = {
    'cls_token': 'cls_token', 'pos_embed': 'pos_embed',
    'patch_embed.proj.weight': 'patch_embed.projection.weight',
    'patch_embed.proj.bias': 'patch_embed.projection.bias',
    'norm.weight': 'ln1.weight', 'norm.bias': 'ln1.bias',
}
_DROPPED = ('head.', 'pre_logits.', 'fc_norm.', 'head_drop.')


def _tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32).contiguous()


def convert_timm_vit(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Map a timm ``VisionTransformer`` state dict to mmpretrain keys.

    Raises:
        ValueError: on a key that is neither a backbone weight nor a head to drop.
    """
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(_DROPPED):
            continue
        if key in _TIMM_TOP:
            out[_TIMM_TOP[key]] = value.float().contiguous()
            continue
        m = re.fullmatch(r'blocks\.(\d+)\.(.+)\.(weight|bias)', key)
        if m and m.group(2) in _TIMM_BLOCK:
            out[f'layers.{m.group(1)}.{_TIMM_BLOCK[m.group(2)]}.{m.group(3)}'] = \
                value.float().contiguous()
            continue
        raise ValueError(f'convert_timm_vit: unexpected key {key!r} (not a timm ViT '
                         'backbone weight)')
    return out


def _npz_prefix(npz: Mapping[str, np.ndarray]) -> str:
    for prefix in ('', 'opt/target/'):
        if f'{prefix}embedding/kernel' in npz:
            return prefix
    raise KeyError('convert_jax_vit_npz: no embedding/kernel (nor opt/target/embedding/kernel); '
                   'not a Google ViT checkpoint')


def _get(npz, key):
    if key not in npz:
        raise KeyError(f'convert_jax_vit_npz: missing key {key!r}')
    return np.asarray(npz[key])


def convert_jax_vit_npz(npz: Mapping[str, np.ndarray]) -> 'OrderedDict[str, torch.Tensor]':
    """Map a Google ``ViT-*.npz`` (``np.load`` result or dict) to mmpretrain keys.

    Layout: ``embedding/kernel`` ``(p, p, 3, C)`` (HWIO), ``cls`` ``(1, 1, C)``,
    ``Transformer/posembed_input/pos_embedding`` ``(1, N, C)``, per block
    ``Transformer/encoderblock_{i}/`` ``LayerNorm_0``, ``MultiHeadDotProductAttention_1/
    {query,key,value}`` (kernel ``(C, heads, head_dim)``, bias ``(heads, head_dim)``), ``out``
    (kernel ``(heads, head_dim, C)``), ``LayerNorm_2``, ``MlpBlock_3/Dense_{0,1}``, and
    ``Transformer/encoder_norm``.
    """
    p = _npz_prefix(npz)
    out = OrderedDict()
    out['cls_token'] = _tensor(_get(npz, f'{p}cls'))
    out['pos_embed'] = _tensor(_get(npz, f'{p}Transformer/posembed_input/pos_embedding'))
    out['patch_embed.projection.weight'] = _tensor(
        _get(npz, f'{p}embedding/kernel').transpose(3, 2, 0, 1))
    out['patch_embed.projection.bias'] = _tensor(_get(npz, f'{p}embedding/bias'))
    depth = len({k.split('/')[1] for k in npz if k.startswith(f'{p}Transformer/encoderblock_')})
    if depth == 0:
        raise KeyError('convert_jax_vit_npz: no Transformer/encoderblock_* keys')
    for i in range(depth):
        b = f'{p}Transformer/encoderblock_{i}/'
        o = f'layers.{i}.'
        for src, dst in (('LayerNorm_0', 'ln1'), ('LayerNorm_2', 'ln2')):
            out[o + dst + '.weight'] = _tensor(_get(npz, b + src + '/scale'))
            out[o + dst + '.bias'] = _tensor(_get(npz, b + src + '/bias'))
        mha = b + 'MultiHeadDotProductAttention_1/'
        kernels, biases = [], []
        for name in ('query', 'key', 'value'):
            kernel = _get(npz, mha + name + '/kernel')  # (C_in, heads, head_dim)
            kernels.append(kernel.reshape(kernel.shape[0], -1).T)
            biases.append(_get(npz, mha + name + '/bias').reshape(-1))
        out[o + 'attn.qkv.weight'] = _tensor(np.concatenate(kernels, 0))
        out[o + 'attn.qkv.bias'] = _tensor(np.concatenate(biases, 0))
        kernel = _get(npz, mha + 'out/kernel')  # (heads, head_dim, C_out)
        out[o + 'attn.proj.weight'] = _tensor(kernel.reshape(-1, kernel.shape[-1]).T)
        out[o + 'attn.proj.bias'] = _tensor(_get(npz, mha + 'out/bias'))
        for src, dst in (('Dense_0', 'ffn.layers.0.0'), ('Dense_1', 'ffn.layers.1')):
            out[o + dst + '.weight'] = _tensor(_get(npz, b + f'MlpBlock_3/{src}/kernel').T)
            out[o + dst + '.bias'] = _tensor(_get(npz, b + f'MlpBlock_3/{src}/bias'))
    out['ln1.weight'] = _tensor(_get(npz, f'{p}Transformer/encoder_norm/scale'))
    out['ln1.bias'] = _tensor(_get(npz, f'{p}Transformer/encoder_norm/bias'))
    return out


def describe(state_dict) -> Tuple[int, int]:
    """``(embed_dims, depth)`` of a converted state dict."""
    depth = len({k.split('.')[1] for k in state_dict if k.startswith('layers.')})
    return state_dict['cls_token'].shape[-1], depth

"""Rename published ViT weights to the key layout of mmpretrain's ``VisionTransformer``.

Two sources are understood:

* Google's JAX/Flax ``.npz`` files (``ViT-B_16.npz`` and relatives, keys such as
  ``Transformer/encoderblock_3/MlpBlock_3/Dense_0/kernel``, optionally under ``opt/target/``),
  handled by :func:`convert_jax_vit_npz`;
* timm ``VisionTransformer`` state dicts (``jx_vit_base_patch16_224_in21k-e5005f0a.pth`` and
  relatives, keys such as ``blocks.3.mlp.fc1.weight``), handled by :func:`convert_timm_vit`.

Both return an ``OrderedDict`` of float32, contiguous tensors that own their memory, holding the
backbone only: classifier heads (``head``) and representation layers (``pre_logits``) are left out,
because a transfer task trains its own head (:func:`split_timm_vit` and
:func:`split_jax_vit_npz` return them alongside the backbone when they are wanted).

The converted weights reproduce the source network exactly (checked in
``tests/test_converters/test_vit_converters.py``, max abs difference < 1e-5) when the mmpretrain
backbone is built with these settings, all of which are mmpretrain's defaults except the ``arch``::

    VisionTransformer(
        arch=dict(embed_dims=C, num_layers=depth, num_heads=heads, feedforward_channels=4 * C),
        # or arch='b' for ViT-B/16 (768, 12, 12, 3072)
        patch_size=16, img_size=224,
        qkv_bias=True,                       # Google/timm ViTs have q, k, v biases
        norm_cfg=dict(type='LN', eps=1e-6),  # their LayerNorms use eps 1e-6, not torch's 1e-5
        pre_norm=False,                      # True would drop the patch-embedding bias (CLIP style)
        layer_scale_init_value=0.,           # no layer scale in these models
        with_cls_token=True, final_norm=True,
        out_type='cls_token')                # == timm ``forward_features(x)[:, 0]``

timm checkpoints trained with average pooling carry ``fc_norm`` (the norm applied after pooling)
instead of ``norm``; it becomes ``ln2``, which mmpretrain builds only with
``out_type='avg_featmap'``, and such a backbone needs ``final_norm=False``.

A ``pos_embed`` for another image size is kept as it is: mmpretrain's ``VisionTransformer``
resizes it (bicubic) when the state dict is loaded.
"""
import logging
import re
from collections import OrderedDict
from typing import Dict, Mapping, Tuple

import numpy as np
import torch

logger = logging.getLogger(__name__)

# timm name inside ``blocks.{i}.`` -> mmpretrain name inside ``layers.{i}.``
_TIMM_BLOCK_PARTS = {
    'norm1': 'ln1',
    'attn.qkv': 'attn.qkv',
    'attn.proj': 'attn.proj',
    'norm2': 'ln2',
    'mlp.fc1': 'ffn.layers.0.0',
    'mlp.fc2': 'ffn.layers.1',
}
# timm top-level key -> mmpretrain key
_TIMM_TOP_LEVEL = {
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed',
    'patch_embed.proj.weight': 'patch_embed.projection.weight',
    'patch_embed.proj.bias': 'patch_embed.projection.bias',
    'norm.weight': 'ln1.weight',
    'norm.bias': 'ln1.bias',
    'norm_pre.weight': 'pre_norm.weight',
    'norm_pre.bias': 'pre_norm.bias',
    'fc_norm.weight': 'ln2.weight',
    'fc_norm.bias': 'ln2.bias',
}
_TIMM_BLOCK_KEY = re.compile(r'blocks\.(\d+)\.(.+)\.(weight|bias)')
# classifier parts that a transfer task replaces
_TIMM_HEAD_PREFIXES = ('head.', 'pre_logits.')
_NPZ_HEAD_PREFIXES = ('head/', 'pre_logits/')
_NPZ_PREFIXES = ('', 'opt/target/')
_NPZ_BLOCK_KEY = re.compile(r'Transformer/encoderblock_(\d+)/')


def _as_float32(value) -> torch.Tensor:
    """A float32, contiguous copy of a tensor or an array (never a view of the input)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device='cpu', dtype=torch.float32, copy=True).contiguous()
    return torch.tensor(np.ascontiguousarray(value), dtype=torch.float32)


def split_timm_vit(
    state_dict: Mapping[str, torch.Tensor]
) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, torch.Tensor]]:
    """Rename a timm ViT state dict; also return the classifier tensors that were set aside.

    Returns:
        ``(backbone, dropped)``: ``backbone`` in mmpretrain names (float32 copies), ``dropped``
        the ``head.*`` / ``pre_logits.*`` entries under their timm names, untouched.

    Raises:
        ValueError: for a key that is neither a known backbone weight nor a head, e.g. a
            register token or layer-scale gamma, which mmpretrain's plain ViT cannot hold.
    """
    backbone = OrderedDict()
    dropped = {}
    for key, value in state_dict.items():
        if key.startswith(_TIMM_HEAD_PREFIXES):
            dropped[key] = value
            continue
        if key in _TIMM_TOP_LEVEL:
            backbone[_TIMM_TOP_LEVEL[key]] = _as_float32(value)
            continue
        match = _TIMM_BLOCK_KEY.fullmatch(key)
        if match is not None and match.group(2) in _TIMM_BLOCK_PARTS:
            index, part, kind = match.groups()
            backbone[f'layers.{index}.{_TIMM_BLOCK_PARTS[part]}.{kind}'] = _as_float32(value)
            continue
        raise ValueError(f'convert_timm_vit: unknown key {key!r}: not part of a timm ViT '
                         'that mmpretrain VisionTransformer can represent')
    return backbone, dropped


def convert_timm_vit(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Rename a timm ViT state dict to mmpretrain ``VisionTransformer`` keys.

    ``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2`` become
    ``layers.{i}.ln1/attn.qkv/attn.proj/ln2/ffn.layers.0.0/ffn.layers.1``,
    ``patch_embed.proj`` becomes ``patch_embed.projection``, the final ``norm`` becomes ``ln1``
    (``fc_norm`` becomes ``ln2``); ``cls_token`` and ``pos_embed`` keep their names. The
    ``head.*`` and ``pre_logits.*`` entries are dropped with a log message.

    Raises:
        ValueError: naming the first key that has no place in the mmpretrain model.
    """
    backbone, dropped = split_timm_vit(state_dict)
    if dropped:
        logger.info('convert_timm_vit: dropped the classifier keys %s', sorted(dropped))
    return backbone


# OpenAI CLIP image-tower name -> timm name (then mapped by the timm table); the order matters
_OPENAI_CLIP_SWAPS = (
    ('conv1.', 'patch_embed.proj.'), ('class_embedding', 'cls_token'),
    ('positional_embedding', 'pos_embed'), ('transformer.resblocks.', 'blocks.'),
    ('ln_pre.', 'norm_pre.'), ('ln_post.', 'norm.'), ('.ln_1.', '.norm1.'), ('.ln_2.', '.norm2.'),
    ('attn.in_proj_weight', 'attn.qkv.weight'), ('attn.in_proj_bias', 'attn.qkv.bias'),
    ('attn.out_proj.', 'attn.proj.'), ('mlp.c_fc.', 'mlp.fc1.'), ('mlp.c_proj.', 'mlp.fc2.'),
)


def is_openai_clip(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` is an OpenAI CLIP model (``visual.*``) or its image tower."""
    return 'visual.conv1.weight' in state_dict or 'conv1.weight' in state_dict


def split_openai_clip(
    state_dict: Mapping[str, torch.Tensor]
) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, torch.Tensor]]:
    """Rename an OpenAI CLIP ViT image tower to mmpretrain ``VisionTransformer`` keys.

    Accepts the whole CLIP model (the ``visual.*`` keys are used, the text tower is set aside)
    or the image tower alone. ``conv1`` becomes ``patch_embed.projection`` (no bias: build the
    backbone with ``pre_norm=True``), ``ln_pre`` ``pre_norm``, ``ln_post`` the final ``ln1``,
    ``class_embedding`` ``(C,)`` the ``cls_token`` ``(1, 1, C)``, ``positional_embedding``
    ``(N, C)`` the ``pos_embed`` ``(1, N, C)``; the blocks map as timm's.

    Returns:
        ``(backbone, dropped)``: ``dropped`` holds the image projection ``proj`` ``(C, D)`` (a
        linear map before a trained head adds nothing) and every non-image key, untouched.
    """
    prefix = 'visual.' if 'visual.conv1.weight' in state_dict else ''
    timm_like, dropped = OrderedDict(), {}
    for key, value in state_dict.items():
        if not key.startswith(prefix) or key == f'{prefix}proj':
            dropped[key] = value
            continue
        name = key[len(prefix):]
        for old, new in _OPENAI_CLIP_SWAPS:
            name = name.replace(old, new)
        if name == 'cls_token':
            value = value.reshape(1, 1, -1)
        elif name == 'pos_embed':
            value = value.unsqueeze(0)
        timm_like[name] = value
    backbone, _ = split_timm_vit(timm_like)
    return backbone, dropped


def _npz_prefix(npz: Mapping[str, np.ndarray]) -> str:
    for prefix in _NPZ_PREFIXES:
        if f'{prefix}embedding/kernel' in npz:
            return prefix
    raise KeyError("convert_jax_vit_npz: missing key 'embedding/kernel' (also looked for "
                   "'opt/target/embedding/kernel'); this is not a Google ViT checkpoint")


def split_jax_vit_npz(
    npz: Mapping[str, np.ndarray]
) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, np.ndarray]]:
    """Like :func:`convert_jax_vit_npz`, but also return the dropped ``head``/``pre_logits``
    arrays (under their npz names, untouched) instead of logging them."""
    prefix = _npz_prefix(npz)
    used = set()

    def get(name: str) -> np.ndarray:
        key = prefix + name
        if key not in npz:
            raise KeyError(f'convert_jax_vit_npz: missing key {key!r}')
        used.add(key)
        return np.asarray(npz[key])

    out = OrderedDict()
    out['cls_token'] = _as_float32(get('cls'))
    out['pos_embed'] = _as_float32(get('Transformer/posembed_input/pos_embedding'))
    out['patch_embed.projection.weight'] = _as_float32(
        get('embedding/kernel').transpose(3, 2, 0, 1))
    out['patch_embed.projection.bias'] = _as_float32(get('embedding/bias'))

    block_ids = [int(m.group(1)) for m in
                 (_NPZ_BLOCK_KEY.match(k[len(prefix):]) for k in npz if k.startswith(prefix))
                 if m is not None]
    if not block_ids:
        raise KeyError(f'convert_jax_vit_npz: missing key '
                       f"'{prefix}Transformer/encoderblock_0/...' (no transformer blocks found)")
    for i in range(max(block_ids) + 1):
        src = f'Transformer/encoderblock_{i}/'
        dst = f'layers.{i}.'
        for flax_norm, mm_norm in (('LayerNorm_0', 'ln1'), ('LayerNorm_2', 'ln2')):
            out[f'{dst}{mm_norm}.weight'] = _as_float32(get(f'{src}{flax_norm}/scale'))
            out[f'{dst}{mm_norm}.bias'] = _as_float32(get(f'{src}{flax_norm}/bias'))

        attn = f'{src}MultiHeadDotProductAttention_1/'
        weights, biases = [], []
        for name in ('query', 'key', 'value'):
            kernel = get(f'{attn}{name}/kernel')  # (C_in, heads, head_dim)
            weights.append(kernel.reshape(kernel.shape[0], -1).T)  # (C_out, C_in)
            biases.append(get(f'{attn}{name}/bias').reshape(-1))
        out[f'{dst}attn.qkv.weight'] = _as_float32(np.concatenate(weights, axis=0))
        out[f'{dst}attn.qkv.bias'] = _as_float32(np.concatenate(biases, axis=0))
        kernel = get(f'{attn}out/kernel')  # (heads, head_dim, C_out)
        out[f'{dst}attn.proj.weight'] = _as_float32(kernel.reshape(-1, kernel.shape[-1]).T)
        out[f'{dst}attn.proj.bias'] = _as_float32(get(f'{attn}out/bias'))

        for dense, linear in (('Dense_0', 'ffn.layers.0.0'), ('Dense_1', 'ffn.layers.1')):
            out[f'{dst}{linear}.weight'] = _as_float32(get(f'{src}MlpBlock_3/{dense}/kernel').T)
            out[f'{dst}{linear}.bias'] = _as_float32(get(f'{src}MlpBlock_3/{dense}/bias'))

    out['ln1.weight'] = _as_float32(get('Transformer/encoder_norm/scale'))
    out['ln1.bias'] = _as_float32(get('Transformer/encoder_norm/bias'))

    left = sorted(k for k in npz if k not in used)
    dropped = {k: npz[k] for k in left if k[len(prefix):].startswith(_NPZ_HEAD_PREFIXES)}
    unknown = [k for k in left if k not in dropped]
    if unknown:
        raise ValueError(f'convert_jax_vit_npz: unknown keys {unknown[:8]}'
                         f'{" ..." if len(unknown) > 8 else ""}: not part of a plain Google ViT')
    return out, dropped


def convert_jax_vit_npz(npz: Mapping[str, np.ndarray]) -> 'OrderedDict[str, torch.Tensor]':
    """Convert a Google JAX ViT checkpoint (``np.load`` result or a dict) to mmpretrain keys.

    Source keys (``C`` width, ``p`` patch size, ``N`` tokens) and where they go:

    * ``embedding/kernel`` ``(p, p, 3, C)``, HWIO -> ``patch_embed.projection.weight``, OIHW;
      ``embedding/bias`` -> ``patch_embed.projection.bias``
    * ``cls`` ``(1, 1, C)`` -> ``cls_token``;
      ``Transformer/posembed_input/pos_embedding`` ``(1, N, C)`` -> ``pos_embed``
    * per block, under ``Transformer/encoderblock_{i}/`` -> ``layers.{i}.``:

      - ``LayerNorm_0/{scale,bias}`` -> ``ln1.{weight,bias}``;
        ``LayerNorm_2/{scale,bias}`` -> ``ln2.{weight,bias}``
      - ``MultiHeadDotProductAttention_1/{query,key,value}/kernel`` ``(C, heads, head_dim)``,
        each flattened to ``(C, C)``, transposed and stacked -> ``attn.qkv.weight`` ``(3C, C)``;
        the ``(heads, head_dim)`` biases flattened and stacked -> ``attn.qkv.bias``
      - ``MultiHeadDotProductAttention_1/out/kernel`` ``(heads, head_dim, C)``, reshaped to
        ``(C, C)`` and transposed -> ``attn.proj.weight``; ``out/bias`` -> ``attn.proj.bias``
      - ``MlpBlock_3/Dense_0`` -> ``ffn.layers.0.0`` and ``MlpBlock_3/Dense_1`` ->
        ``ffn.layers.1`` (kernels transposed)

    * ``Transformer/encoder_norm/{scale,bias}`` -> ``ln1.{weight,bias}``

    Every key may carry the prefix ``opt/target/`` (older releases). Flax kernels are
    ``(in, out)``, hence the transposes; q, k and v are stacked in that order, as in timm's
    fused ``qkv``. The number of blocks is one more than the highest ``encoderblock_{i}`` found.
    ``head/*`` and ``pre_logits/*`` are dropped with a log message.

    Raises:
        KeyError: naming a missing key (including a block missing from ``0 .. depth - 1``).
        ValueError: naming keys that are neither converted nor a known classifier part.
    """
    backbone, dropped = split_jax_vit_npz(npz)
    if dropped:
        logger.info('convert_jax_vit_npz: dropped the classifier keys %s', sorted(dropped))
    return backbone


def describe(state_dict: Mapping[str, torch.Tensor]) -> Tuple[int, int]:
    """``(embed_dims, num_layers)`` of a state dict in mmpretrain ``VisionTransformer`` keys."""
    layer_ids = {int(k.split('.')[1]) for k in state_dict if k.startswith('layers.')}
    return int(state_dict['cls_token'].shape[-1]), (max(layer_ids) + 1 if layer_ids else 0)

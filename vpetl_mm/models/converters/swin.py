"""Rename Swin Transformer (v1) weights to the layout of the OpenMMLab ``SwinTransformer``
(mmpretrain, mmseg and mmdet share it).

Two source layouts are converted (``detect_swin_layout`` names them):

* ``official-swin-v1``: Microsoft's release (``swin_base_patch4_window7_224_22k.pth`` and
  relatives: a state dict under ``model``, keys such as ``layers.2.blocks.5.attn.qkv.weight``, the
  patch merging at the END of stages 0..n-2 as ``layers.{i}.downsample``, the classifier as
  ``head.*``, usually with the ``relative_position_index`` and ``attn_mask`` buffers). timm before
  0.9 saved this layout too.
* ``timm-swin-v1``: timm >= 0.9 (``timm.create_model('swin_base_patch4_window7_224')``'s
  ``state_dict()``): the same names, but each patch merging sits at the START of the next stage
  (``layers.{i}.downsample`` for i = 1..n-1, none in ``layers.0``), the classifier is
  ``head.fc.*``, and the non-persistent ``relative_position_index`` / ``attn_mask`` buffers are
  absent.

Refused with a ``ValueError`` naming the layout: OpenMMLab's own (``stages.*`` /
``patch_embed.projection``, also under ``backbone.``: needs no conversion), HuggingFace
transformers' Swin (``swin.embeddings.*`` / ``embeddings.patch_embeddings.*`` /
``encoder.layers.*``), Swin v2 in any layout (``logit_scale`` / ``cpb_mlp`` keys) and anything else
(``unknown``, with a few of its keys).

The mapping is the one of mmseg's ``swin2mmseg.py`` and mmdet's ``swin_converter``:

* ``layers.{i}`` -> ``stages.{i}``, except timm's ``layers.{i}.downsample`` ->
  ``stages.{i-1}.downsample``; ``attn.*`` -> ``attn.w_msa.*``; ``mlp.fc1`` / ``mlp.fc2`` ->
  ``ffn.layers.0.0`` / ``ffn.layers.1``; ``patch_embed.proj`` -> ``patch_embed.projection``;
* the patch merging's ``reduction`` and ``norm`` are permuted from the concatenation order of the
  original ``(x0, x1, x2, x3)`` = (row, column) offsets ``(0,0), (1,0), (0,1), (1,1)`` to
  ``nn.Unfold``'s channel-major order (channel ``c * 4 + row * 2 + column``). timm's
  ``PatchMerging`` (``reshape(B, H/2, 2, W/2, 2, C).permute(0, 1, 3, 4, 2, 5)``: column offset
  major, row offset minor) concatenates in the same order, so both layouts get the same
  permutation;
* the final ``norm`` becomes ``norm{last stage}`` (the OpenMMLab backbone names one norm per out
  index; the default ``out_indices=(last,)``);
* ``stages.{i}.blocks.{j}.attn.w_msa.relative_position_index`` is always written, rebuilt as
  OpenMMLab's ``WindowMSA`` builds it from the window size ``w`` read off the
  ``relative_position_bias_table`` (``(2w-1)^2`` rows); a source index table, where present, must
  equal it;
* ``head.*`` (``head.fc.*``) and the ``attn_mask`` buffers are left out (the backbone computes its
  masks).

The converted weights reproduce the source network (checked against timm's Swin, in both layouts,
``tests/test_converters/test_swin_converter.py``).
"""
import math
import re
from collections import OrderedDict
from typing import Dict, Mapping, Sequence, Tuple, Union

import torch

OFFICIAL = 'official-swin-v1'
TIMM = 'timm-swin-v1'
OPENMMLAB = 'openmmlab'
HF_TRANSFORMERS = 'hf-transformers-swin'
SWIN_V2 = 'swin-v2'
UNKNOWN = 'unknown'
CONVERTIBLE = (OFFICIAL, TIMM)

_STAGE = re.compile(r'layers\.(\d+)\.')
_BIAS_TABLE = re.compile(r'layers\.(\d+)\.blocks\.\d+\.attn\.relative_position_bias_table$')
_DOWNSAMPLE = re.compile(r'layers\.(\d+)\.downsample\.')
_RENAMES = (('.attn.', '.attn.w_msa.'), ('.mlp.fc1.', '.ffn.layers.0.0.'),
            ('.mlp.fc2.', '.ffn.layers.1.'))
_HF_PREFIXES = ('swin.embeddings.', 'swin.encoder.', 'embeddings.patch_embeddings.',
                'encoder.layers.')


def _detect(state_dict: Mapping[str, torch.Tensor]) -> Tuple[str, str]:
    """``(layout, why)``: the layout name and the evidence, for messages."""
    keys = [k for k in state_dict if isinstance(k, str)]
    v2 = [k for k in keys if 'logit_scale' in k or 'cpb_mlp' in k]
    if v2:
        return SWIN_V2, f'has logit_scale / cpb_mlp keys such as {v2[0]!r}'
    hf = [k for k in keys if k.startswith(_HF_PREFIXES)]
    if hf:
        return HF_TRANSFORMERS, f'has keys such as {hf[0]!r}'
    mm = [k for k in keys
          if k.split('.', 1)[0] == 'stages' or k.startswith('patch_embed.projection.')
          or k.startswith(('backbone.stages.', 'backbone.patch_embed.projection.'))]
    if mm:
        return OPENMMLAB, f'has keys such as {mm[0]!r}'
    stages = {int(m.group(1)) for k in keys for m in [_BIAS_TABLE.match(k)] if m}
    if not stages:
        return UNKNOWN, 'no layers.{i}.blocks.{j}.attn.relative_position_bias_table keys'
    num = max(stages) + 1
    if stages != set(range(num)):
        return UNKNOWN, f'blocks in stages {sorted(stages)}, not 0..{num - 1}'
    merges = {int(m.group(1)) for k in keys for m in [_DOWNSAMPLE.match(k)] if m}
    if num == 1 and not merges:  # no patch merging to tell them apart: the head decides
        if any(k.startswith('head.fc.') for k in keys):
            return TIMM, 'one stage, head.fc'
        return OFFICIAL, 'one stage'
    if merges == set(range(num - 1)):
        return OFFICIAL, f'patch merging at the end of stages 0..{num - 2}'
    if merges == set(range(1, num)):
        return TIMM, f'patch merging at the start of stages 1..{num - 1}'
    return UNKNOWN, (f'{num} stages with patch merging under layers.{sorted(merges)}: neither '
                     'the official (end of stages 0..n-2) nor the timm (start of stages 1..n-1) '
                     'placement')


def detect_swin_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The layout of ``state_dict``: one of ``official-swin-v1``, ``timm-swin-v1`` (both
    converted), ``openmmlab``, ``hf-transformers-swin``, ``swin-v2`` or ``unknown``."""
    return _detect(state_dict)[0]


def check_swin_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The layout of ``state_dict`` if ``split_ms_swin`` converts it.

    Raises:
        ValueError: for any other layout, named in the message.
    """
    layout, why = _detect(state_dict)
    if layout in CONVERTIBLE:
        return layout
    if layout == OPENMMLAB:
        message = ('OpenMMLab SwinTransformer layout (stages.* / patch_embed.projection): '
                   'needs no conversion')
    elif layout == HF_TRANSFORMERS:
        message = ('HuggingFace transformers Swin layout (swin.embeddings / '
                   'embeddings.patch_embeddings / encoder.layers): not supported, convert an '
                   'official or timm Swin v1 checkpoint instead')
    elif layout == SWIN_V2:
        message = 'Swin v2 layout: not supported (this converter handles Swin v1)'
    else:
        shown = ', '.join(repr(k) for k in list(state_dict)[:5])
        message = (f'unknown layout: not an official Swin v1 (or timm Swin v1) state dict; '
                   f'first keys: {shown}')
    raise ValueError(f'{message} ({why})')


def is_ms_swin(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` has a layout ``split_ms_swin`` converts (official or timm)."""
    return detect_swin_layout(state_dict) in CONVERTIBLE


def relative_position_index(window_size: Union[int, Sequence[int]]) -> torch.Tensor:
    """The ``relative_position_index`` buffer of OpenMMLab's ``WindowMSA`` for ``window_size``
    (an int for a square window, or ``(Wh, Ww)``): int64, ``(Wh*Ww, Wh*Ww)``."""
    if isinstance(window_size, int):
        window_size = (window_size, window_size)
    win_h, win_w = window_size
    seq1 = torch.arange(0, (2 * win_w - 1) * win_h, 2 * win_w - 1)
    seq2 = torch.arange(0, win_w, 1)
    coords = (seq1[:, None] + seq2[None, :]).reshape(1, -1)
    return (coords + coords.T).flip(1).contiguous()


def _window_size(table: torch.Tensor, key: str) -> int:
    rows = table.shape[0]
    side = math.isqrt(rows)
    if table.dim() != 2 or side * side != rows or side % 2 == 0:
        raise ValueError(f'split_ms_swin: {key} has shape {tuple(table.shape)}: not '
                         '((2w-1)^2, heads) for a square window w')
    return (side + 1) // 2


def _unfold_order_weight(weight: torch.Tensor) -> torch.Tensor:
    out_channels, in_channels = weight.shape
    weight = weight.reshape(out_channels, 4, in_channels // 4)[:, [0, 2, 1, 3]]
    return weight.transpose(1, 2).reshape(out_channels, in_channels)


def _unfold_order_vector(vector: torch.Tensor) -> torch.Tensor:
    channels = vector.shape[0]
    return vector.reshape(4, channels // 4)[[0, 2, 1, 3]].transpose(0, 1).reshape(channels)


def _stage_key(key: str, match: 're.Match', merge_shift: int) -> str:
    stage, rest = int(match.group(1)), key[match.end():]
    if rest.startswith('downsample.'):
        stage -= merge_shift
    new = f'stages.{stage}.{rest}'
    for old, replacement in _RENAMES:
        new = new.replace(old, replacement)
    return new


def split_ms_swin(
    state_dict: Mapping[str, torch.Tensor]
) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, torch.Tensor]]:
    """Rename an official or timm Swin v1 state dict; also return what was left out.

    Returns:
        ``(backbone, dropped)``: ``backbone`` in OpenMMLab names (float32 contiguous copies, plus
        the rebuilt int64 ``relative_position_index`` of every block), ``dropped`` the ``head.*``
        and ``attn_mask`` entries under their original names.

    Raises:
        ValueError: for a layout other than the two converted ones (named), a key that is not
            part of a Swin v1 (named), or a source ``relative_position_index`` that differs
            from the rebuilt one.
    """
    layout = check_swin_layout(state_dict)
    merge_shift = 1 if layout == TIMM else 0
    last = max(int(m.group(1)) for k in state_dict for m in [_STAGE.match(k)] if m)
    backbone, dropped, source_index = OrderedDict(), {}, {}
    for key, value in state_dict.items():
        if key.startswith('head.') or key.endswith('attn_mask'):
            dropped[key] = value
            continue
        match = _STAGE.match(key)
        if match and key.endswith('.attn.relative_position_index'):
            source_index[_stage_key(key, match, merge_shift)] = (key, value)
            continue
        value = value.detach().to('cpu', torch.float32, copy=True).contiguous()
        if key.startswith('patch_embed.'):
            new = key.replace('patch_embed.proj.', 'patch_embed.projection.')
        elif key.startswith('norm.'):
            new = f'norm{last}.' + key[len('norm.'):]
        elif match:
            new = _stage_key(key, match, merge_shift)
            if '.downsample.reduction.weight' in new:
                value = _unfold_order_weight(value)
            elif '.downsample.norm.' in new:
                value = _unfold_order_vector(value)
        else:
            raise ValueError(f'split_ms_swin: unknown key {key!r}: not part of a Swin '
                             f'Transformer v1 ({layout} layout)')
        backbone[new] = value
        if new.endswith('.attn.w_msa.relative_position_bias_table'):
            index_key = new[:-len('bias_table')] + 'index'
            backbone[index_key] = relative_position_index(_window_size(value, key))
    for new, (key, value) in source_index.items():
        if new not in backbone:
            raise ValueError(f'split_ms_swin: {key} without a relative_position_bias_table')
        rebuilt = backbone[new]
        if tuple(value.shape) != tuple(rebuilt.shape) or not torch.equal(
                value.detach().cpu().long(), rebuilt):
            raise ValueError(f'split_ms_swin: {key} differs from the relative_position_index '
                             f'rebuilt for its window size {math.isqrt(rebuilt.shape[0])}')
    return backbone, dropped

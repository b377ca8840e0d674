"""Rename VideoMAE weights to the layout of mmaction's ``VisionTransformer``
(``mmaction/models/backbones/vit_mae.py``).

Three source layouts are converted (``detect_videomae_layout`` names them):

* ``videomae-pretrain``: MCG-NJU/VideoMAE's self-supervised checkpoints
  (``modeling_pretrain.py``; e.g. the Kinetics-400 ViT-B 1600-epoch pretrain V-PETL and AdaptFormer
  start from): the encoder under ``encoder.`` (``encoder.patch_embed.proj``,
  ``encoder.blocks.{i}.attn.qkv`` with ``q_bias`` / ``v_bias``, ``encoder.blocks.{i}.mlp.fc1`` /
  ``fc2``, the final per-token ``encoder.norm``), plus the decoder (``decoder.*``,
  ``encoder_to_decoder.*``, ``mask_token``), which is left out.
* ``videomae-finetune``: VideoMAE's fine-tuned classifiers (``modeling_finetune.py``): the same
  names without the ``encoder.`` prefix, ``fc_norm`` (mean pooling) or ``norm``, optional
  layer-scale ``gamma_1`` / ``gamma_2``, and the classifier ``head``, which is left out.
* ``adaptformer-split-qkv``: ShoufaChen/AdaptFormer's ``models/vit_video.py`` form (its
  ``convert.py`` writes it from a VideoMAE pretrain, keeping the ``encoder.`` prefix; its own
  models save it without): ``attn.q_proj`` / ``k_proj`` / ``v_proj`` (no biases) with
  ``attn.q_bias`` / ``v_bias``, and the MLP unpacked to ``blocks.{i}.fc1`` / ``fc2``. q, k and v
  are stacked, in that order, into ``attn.qkv.weight``. ``head.*`` (AdaptFormer's
  ``BatchNorm1d`` + ``Linear``) is left out; adapter weights (``adaptmlp.*``) and VPT prompts
  (``embeddings.*``) belong to a PEFT method, not to the backbone, and are refused.

Refused with a ``ValueError`` naming the layout: mmaction's own (``patch_embed.projection``, also
under ``backbone.``: needs no conversion), a Video Swin checkpoint (``layers.{i}.blocks.{j}`` with
``relative_position_bias_table``: mmaction's ``SwinTransformer3D`` loads the release directly,
see below), HuggingFace transformers' VideoMAE (``videomae.embeddings.*`` / ``embeddings.*`` /
``encoder.layer.*``) and anything else (``unknown``, with a few of its keys).

The mapping (the VideoMAE side first, without its ``encoder.`` prefix):

* ``patch_embed.proj`` (``Conv3d``, kernel ``(tubelet, patch, patch)``) ->
  ``patch_embed.projection``;
* ``blocks.{i}.norm1`` / ``norm2`` / ``attn.qkv.weight`` / ``attn.q_bias`` / ``attn.v_bias`` /
  ``attn.proj`` / ``gamma_1`` / ``gamma_2`` keep their names; ``blocks.{i}.mlp.fc1`` (AdaptFormer:
  ``blocks.{i}.fc1``) -> ``blocks.{i}.mlp.layers.0.0`` and ``mlp.fc2`` (``fc2``) ->
  ``blocks.{i}.mlp.layers.1`` (mmcv's ``FFN``);
* ``pos_embed``: VideoMAE's default table is a fixed sinusoid of the token index that is not
  saved (a plain tensor attribute), while mmaction registers its table as a (persistent) buffer,
  so the converter writes VideoMAE's table for ``num_frames`` frames of ``img_size`` pixels
  (16 and 224 for the released models) in float32; a learned ``pos_embed``
  (``use_learnable_pos_emb=True``) is kept as it is (build the backbone with
  ``use_learnable_pos_emb=True`` and the checkpoint's sizes). A backbone built for another
  ``num_frames`` keeps its own table when ``vpetl_mm.PEFTBackbone`` loads the file (see
  ``MMActionViTSpec.adapt_state_dict``);
* the norms. mmaction's ``use_mean_pooling=True`` (its default, and what mmaction's VideoMAE
  config and ``configs/_base_/models/videomae-vit-b16.py`` build) gives ``norm = Identity`` and
  ``fc_norm`` on the token mean, exactly VideoMAE's fine-tuned ``use_mean_pooling=True`` model;
  ``use_mean_pooling=False`` gives a per-token ``norm`` and no ``fc_norm``. So a source
  ``fc_norm`` always becomes ``fc_norm``. A source ``norm`` (the self-supervised encoder's
  ``encoder.norm``, or a fine-tuned ``use_mean_pooling=False`` model's ``norm``) becomes
  ``final_norm``:

  - ``'fc_norm'`` (the default): load with ``use_mean_pooling=True``. The encoder's LayerNorm
    is then applied to the mean of the un-normalised tokens instead of to every token before
    the mean, so this is an initialisation of the pooled norm rather than the encoder's exact
    function; it keeps the trained affine parameters where VideoMAE's and AdaptFormer's
    fine-tuning drop ``encoder.norm`` and start ``fc_norm`` at weight 1, bias 0. Before a linear
    head the two differ only in the head's parametrisation (a per-channel affine map followed by
    a linear layer is a linear layer).
  - ``'norm'``: load with ``use_mean_pooling=False``: every token is normed exactly as in the
    source (use ``return_feat_map=True`` for the tokens; without it mmaction returns token 0,
    as VideoMAE's ``use_mean_pooling=False`` model does).

The converted weights reproduce the source network (checked against plain-torch transcriptions
of VideoMAE's and AdaptFormer's encoders, ``tests/test_converters/test_video_converters.py``,
to 1e-5) when the mmaction backbone is built with the source's sizes and
``norm_cfg=dict(type='LN', eps=1e-6)``, ``qkv_bias=True`` when ``q_bias`` / ``v_bias`` are present,
``init_values > 0`` when ``gamma_1`` / ``gamma_2`` are.

Video Swin needs no converter: the Video-Swin-Transformer releases (e.g.
``swin_base_patch244_window877_kinetics400_22k.pth``) are mmaction 0.x checkpoints whose
``backbone.*`` keys are mmaction 1.x's ``SwinTransformer3D`` keys except the output norm,
``norm`` -> ``norm{last out index}``, which ``MMActionSwin3DSpec.adapt_state_dict`` renames on
load: ``PEFTBackbone(backbone=dict(type='SwinTransformer3D', ...), pretrained=RELEASE,
pretrained_prefix='backbone.')``.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Sequence, Tuple

import torch

VIDEOMAE_PRETRAIN = 'videomae-pretrain'
VIDEOMAE_FINETUNE = 'videomae-finetune'
ADAPTFORMER = 'adaptformer-split-qkv'
MMACTION = 'mmaction'
VIDEO_SWIN = 'video-swin'
HF_TRANSFORMERS = 'hf-transformers-videomae'
UNKNOWN = 'unknown'
CONVERTIBLE = (VIDEOMAE_PRETRAIN, VIDEOMAE_FINETUNE, ADAPTFORMER)
FINAL_NORMS = ('fc_norm', 'norm')

_BLOCK_KEY = re.compile(r'blocks\.(\d+)\.(.+)')
# name inside ``blocks.{i}.`` -> mmaction name inside ``blocks.{i}.`` (both layouts)
_BLOCK_PARTS = {
    'norm1.weight': 'norm1.weight', 'norm1.bias': 'norm1.bias',
    'norm2.weight': 'norm2.weight', 'norm2.bias': 'norm2.bias',
    'attn.q_bias': 'attn.q_bias', 'attn.v_bias': 'attn.v_bias',
    'attn.proj.weight': 'attn.proj.weight', 'attn.proj.bias': 'attn.proj.bias',
    'gamma_1': 'gamma_1', 'gamma_2': 'gamma_2',
}
_QKV = {'attn.qkv.weight': 'attn.qkv.weight'}
_MLP = {'mlp.fc1.weight': 'mlp.layers.0.0.weight', 'mlp.fc1.bias': 'mlp.layers.0.0.bias',
        'mlp.fc2.weight': 'mlp.layers.1.weight', 'mlp.fc2.bias': 'mlp.layers.1.bias'}
_SPLIT_MLP = {'fc1.weight': 'mlp.layers.0.0.weight', 'fc1.bias': 'mlp.layers.0.0.bias',
              'fc2.weight': 'mlp.layers.1.weight', 'fc2.bias': 'mlp.layers.1.bias'}
_SPLIT_QKV = ('attn.q_proj.weight', 'attn.k_proj.weight', 'attn.v_proj.weight')
# top-level parts of the pretraining model / of a classifier that are not the backbone
_PRETRAIN_EXTRAS = ('decoder.', 'encoder_to_decoder.', 'mask_token')
_HEAD_PREFIXES = ('head.', 'fc_dropout.')
_HF_PREFIXES = ('videomae.', 'embeddings.patch_embeddings.', 'encoder.layer.')
_SWIN_TABLE = re.compile(r'(backbone\.)?layers\.\d+\.blocks\.\d+\.attn\.'
                         r'relative_position_bias_table$')


def _as_float32(value) -> torch.Tensor:
    """A float32, contiguous copy of a tensor (never a view of the input)."""
    return value.detach().to(device='cpu', dtype=torch.float32, copy=True).contiguous()


def _detect(state_dict: Mapping[str, torch.Tensor]) -> Tuple[str, str, str]:
    """``(layout, prefix, why)``: the layout name, the encoder prefix and the evidence."""
    keys = [k for k in state_dict if isinstance(k, str)]
    mm = [k for k in keys if k.startswith(('patch_embed.projection.',
                                           'backbone.patch_embed.projection.'))]
    if mm:
        return MMACTION, '', f'has keys such as {mm[0]!r}'
    swin = [k for k in keys if _SWIN_TABLE.match(k)]
    if swin:
        return VIDEO_SWIN, '', f'has keys such as {swin[0]!r}'
    hf = [k for k in keys if k.startswith(_HF_PREFIXES)]
    if hf:
        return HF_TRANSFORMERS, '', f'has keys such as {hf[0]!r}'
    for prefix in ('encoder.', ''):
        if f'{prefix}patch_embed.proj.weight' not in state_dict:
            continue
        parts = {m.group(2) for k in keys if k.startswith(prefix)
                 for m in [_BLOCK_KEY.fullmatch(k[len(prefix):])] if m}
        fused = 'attn.qkv.weight' in parts
        split = any(p in parts for p in _SPLIT_QKV)
        where = f'{prefix}patch_embed.proj.weight and {prefix}blocks.{{i}}.'
        if fused and split:
            return UNKNOWN, prefix, (f'{where}attn.qkv as well as attn.q_proj / k_proj / '
                                     'v_proj: neither VideoMAE nor AdaptFormer')
        if split:
            return ADAPTFORMER, prefix, f'{where}attn.q_proj / k_proj / v_proj'
        if fused:
            layout = VIDEOMAE_PRETRAIN if prefix else VIDEOMAE_FINETUNE
            return layout, prefix, f'{where}attn.qkv'
        return UNKNOWN, prefix, f'{prefix}patch_embed.proj.weight but no attention blocks'
    return UNKNOWN, '', 'no patch_embed.proj.weight (nor encoder.patch_embed.proj.weight)'


def detect_videomae_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The layout of ``state_dict``: one of ``videomae-pretrain``, ``videomae-finetune``,
    ``adaptformer-split-qkv`` (all converted), ``mmaction``, ``video-swin``,
    ``hf-transformers-videomae`` or ``unknown``."""
    return _detect(state_dict)[0]


def check_videomae_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The layout of ``state_dict`` if :func:`split_videomae` converts it.

    Raises:
        ValueError: for any other layout, named in the message.
    """
    layout, _, why = _detect(state_dict)
    if layout in CONVERTIBLE:
        return layout
    if layout == MMACTION:
        message = ('mmaction VisionTransformer layout (patch_embed.projection): needs no '
                   "conversion (load a whole-recognizer file with pretrained_prefix='backbone.')")
    elif layout == VIDEO_SWIN:
        message = ('Video Swin layout (layers.{i}.blocks.{j}): not a VideoMAE checkpoint; the '
                   'Video Swin releases load into mmaction SwinTransformer3D as they are '
                   "(pretrained_prefix='backbone.')")
    elif layout == HF_TRANSFORMERS:
        message = ('HuggingFace transformers VideoMAE layout (videomae.embeddings / '
                   'encoder.layer): not supported, convert an MCG-NJU/VideoMAE checkpoint '
                   'instead')
    else:
        shown = ', '.join(repr(k) for k in list(state_dict)[:5])
        message = (f'unknown layout: not a VideoMAE (pretrain / fine-tuned) or AdaptFormer '
                   f'state dict; first keys: {shown}')
    raise ValueError(f'{message} ({why})')


def sinusoid_table(num_tokens: int, embed_dims: int) -> torch.Tensor:
    """VideoMAE's fixed position table, ``(1, num_tokens, embed_dims)`` float32: entry
    ``(p, j)`` is ``sin`` (even ``j``) or ``cos`` (odd ``j``) of
    ``p / 10000 ** (2 * (j // 2) / embed_dims)``, computed in float64."""
    position = torch.arange(num_tokens, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(embed_dims) // 2).to(torch.float64) / embed_dims
    angles = position / torch.pow(torch.tensor(10000., dtype=torch.float64), exponent)
    angles[:, 0::2] = torch.sin(angles[:, 0::2])
    angles[:, 1::2] = torch.cos(angles[:, 1::2])
    return angles.to(torch.float32).unsqueeze(0).contiguous()


def _num_tokens(patch_weight: torch.Tensor, num_frames: int, img_size: int) -> int:
    if patch_weight.dim() != 5:
        raise ValueError(f'split_videomae: patch_embed.proj.weight has shape '
                         f'{tuple(patch_weight.shape)}: not a Conv3d kernel '
                         '(C, 3, tubelet, patch, patch)')
    tubelet, patch_h, patch_w = patch_weight.shape[2:]
    if num_frames % tubelet or img_size % patch_h or img_size % patch_w:
        raise ValueError(f'split_videomae: num_frames={num_frames} / img_size={img_size} are not '
                         f'multiples of the tubelet {tubelet} / patch {patch_h}x{patch_w}')
    return (num_frames // tubelet) * (img_size // patch_h) * (img_size // patch_w)


def split_videomae(
    state_dict: Mapping[str, torch.Tensor], num_frames: int = 16, img_size: int = 224,
    final_norm: str = 'fc_norm'
) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, torch.Tensor]]:
    """Rename a VideoMAE (pretrain or fine-tuned) or AdaptFormer state dict; also return what
    was left out.

    Args:
        state_dict: the source weights (the flat state dict, already unwrapped).
        num_frames, img_size: the clip the fixed sinusoidal ``pos_embed`` is written for
            (ignored when the source holds a learned ``pos_embed``).
        final_norm: ``'fc_norm'`` or ``'norm'``: where a source ``norm`` goes (see the module
            docstring); a source ``fc_norm`` always becomes ``fc_norm``.

    Returns:
        ``(backbone, dropped)``: ``backbone`` in mmaction ``VisionTransformer`` names (float32
        contiguous copies, ``pos_embed`` included), ``dropped`` the decoder / ``mask_token`` /
        ``encoder_to_decoder`` / ``head`` entries under their original names.

    Raises:
        ValueError: for a layout other than the three converted ones (named), a key that has no
            place in mmaction's ``VisionTransformer`` (named), a source holding both ``norm``
            and ``fc_norm``, or a ``final_norm`` other than the two above.
        KeyError: naming a missing ``q_proj`` / ``k_proj`` / ``v_proj`` of a split block, or a
            missing patch embedding or final norm.
    """
    if final_norm not in FINAL_NORMS:
        raise ValueError(f'split_videomae: final_norm={final_norm!r}, expected one of '
                         f'{FINAL_NORMS}')
    layout, prefix, _ = _detect(state_dict)
    check_videomae_layout(state_dict)
    split = layout == ADAPTFORMER
    block_parts = dict(_BLOCK_PARTS, **(_SPLIT_MLP if split else dict(_MLP, **_QKV)))
    has = {k[len(prefix):] for k in state_dict if k.startswith(prefix)}
    if {'norm.weight', 'fc_norm.weight'} <= has:
        raise ValueError(f'split_videomae: {prefix}norm and {prefix}fc_norm are both present; '
                         'mmaction VisionTransformer holds one of them (use_mean_pooling)')
    top_level = {'patch_embed.proj.weight': 'patch_embed.projection.weight',
                 'patch_embed.proj.bias': 'patch_embed.projection.bias',
                 'pos_embed': 'pos_embed',
                 'fc_norm.weight': 'fc_norm.weight', 'fc_norm.bias': 'fc_norm.bias',
                 'norm.weight': f'{final_norm}.weight', 'norm.bias': f'{final_norm}.bias'}
    backbone, dropped, qkv = OrderedDict(), {}, {}
    for key, value in state_dict.items():
        if key.startswith(_PRETRAIN_EXTRAS):
            dropped[key] = value
            continue
        if not key.startswith(prefix):
            raise ValueError(f'split_videomae: unknown key {key!r}: neither under {prefix!r} '
                             f'nor a part of the pretraining decoder ({layout} layout)')
        name = key[len(prefix):]
        if name.startswith(_HEAD_PREFIXES):
            dropped[key] = value
            continue
        if name in top_level:
            backbone[top_level[name]] = _as_float32(value)
            continue
        match = _BLOCK_KEY.fullmatch(name)
        if match is not None and split and match.group(2) in _SPLIT_QKV:
            qkv.setdefault(int(match.group(1)), {})[match.group(2)] = value
            continue
        if match is not None and match.group(2) in block_parts:
            index, part = match.groups()
            backbone[f'blocks.{index}.{block_parts[part]}'] = _as_float32(value)
            continue
        hint = ''
        if '.adaptmlp.' in name or name.startswith('embeddings.'):
            hint = ('; AdaptFormer adapters / VPT prompts are a PEFT method\'s weights: convert '
                    'the pre-trained backbone checkpoint instead')
        raise ValueError(f'split_videomae: unknown key {key!r}: not part of mmaction '
                         f'VisionTransformer ({layout} layout){hint}')
    for index in sorted(qkv):
        parts = qkv[index]
        for part in _SPLIT_QKV:
            if part not in parts:
                raise KeyError(f'split_videomae: missing key {prefix}blocks.{index}.{part}')
        backbone[f'blocks.{index}.attn.qkv.weight'] = _as_float32(
            torch.cat([parts[p] for p in _SPLIT_QKV], dim=0))
    if 'patch_embed.projection.weight' not in backbone:
        raise KeyError(f'split_videomae: missing key {prefix}patch_embed.proj.weight')
    if not any(f'{n}.weight' in backbone for n in FINAL_NORMS):
        raise KeyError(f'split_videomae: missing key {prefix}norm.weight (or '
                       f'{prefix}fc_norm.weight): no final norm')
    if 'pos_embed' not in backbone:
        weight = backbone['patch_embed.projection.weight']
        backbone['pos_embed'] = sinusoid_table(_num_tokens(weight, num_frames, img_size),
                                               weight.shape[0])
    return _ordered(backbone), dropped


# mmaction's state-dict order inside a block (a module's own parameters before its children's)
_MM_BLOCK_ORDER = ('gamma_1', 'gamma_2', 'norm1.weight', 'norm1.bias', 'attn.q_bias',
                   'attn.v_bias', 'attn.qkv.weight', 'attn.proj.weight', 'attn.proj.bias',
                   'norm2.weight', 'norm2.bias', 'mlp.layers.0.0.weight', 'mlp.layers.0.0.bias',
                   'mlp.layers.1.weight', 'mlp.layers.1.bias')
_MM_TOP_ORDER = ('pos_embed', 'patch_embed.projection.weight', 'patch_embed.projection.bias')


def _ordered(backbone: 'OrderedDict[str, torch.Tensor]') -> 'OrderedDict[str, torch.Tensor]':
    """``backbone`` in the order of mmaction's own ``state_dict()``: the position table and the
    patch embedding, the blocks, the final norm."""
    def rank(key):
        match = _BLOCK_KEY.fullmatch(key)
        if match:
            return (1, int(match.group(1)), _MM_BLOCK_ORDER.index(match.group(2)), key)
        if key in _MM_TOP_ORDER:
            return (0, 0, _MM_TOP_ORDER.index(key), key)
        return (2, 0, 0 if key.endswith('.weight') else 1, key)
    return OrderedDict((k, backbone[k]) for k in sorted(backbone, key=rank))


def describe(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, object]:
    """Sizes of a state dict in mmaction ``VisionTransformer`` keys: ``embed_dims``, ``depth``,
    ``tubelet``, ``patch``, ``num_tokens`` (of ``pos_embed``), ``use_mean_pooling``,
    ``qkv_bias`` and ``layer_scale``."""
    weight = state_dict['patch_embed.projection.weight']
    blocks = {int(k.split('.')[1]) for k in state_dict if k.startswith('blocks.')}
    return dict(embed_dims=int(weight.shape[0]), depth=max(blocks) + 1 if blocks else 0,
                tubelet=int(weight.shape[2]), patch=int(weight.shape[3]),
                num_tokens=int(state_dict['pos_embed'].shape[1]),
                use_mean_pooling='fc_norm.weight' in state_dict,
                qkv_bias='blocks.0.attn.q_bias' in state_dict,
                layer_scale='blocks.0.gamma_1' in state_dict)


def summarise_keys(names: Sequence[str]) -> List[str]:
    """``names`` grouped for a message: ``'decoder.* (30 tensors)'`` for each top-level part
    holding several keys, the key itself for a lone one."""
    groups: Dict[str, List[str]] = {}
    for name in sorted(names):
        groups.setdefault(name.split('.', 1)[0], []).append(name)
    out = []
    for head, members in groups.items():
        out.append(members[0] if len(members) == 1 else f'{head}.* ({len(members)} tensors)')
    return out


"""Spec for mmseg ``VisionTransformer`` (``models/backbones/vit.py``)."""
import math

import torch.nn.functional as F
from mmengine.logging import print_log

from vpetl_mm.registry import BACKBONE_SPECS

from .base import (BackboneSpec, BlockInfo, LinearSite, apply_heads_transforms,
                   apply_kv_transforms, grid_from_tokens, qkv_sites)


def _same_tensor(a, b):
    return a is b or (a.shape == b.shape and a.stride() == b.stride()
                      and a.data_ptr() == b.data_ptr())


def _mha_forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                 attn_mask=None, average_attn_weights=True, is_causal=False):
    """Self-attention of ``torch.nn.MultiheadAttention`` with its projections routed through
    the qkv and proj sites.

    ``query``: ``(L, B, C)`` (mmcv's wrapper transposes batch-first inputs; ``key`` and ``value``
    are then separate transposed views of the same storage, hence :func:`_same_tensor`). mmseg's
    ViT calls it with ``key`` and ``value`` equal to ``query`` and no masks; anything else (masks,
    ``add_bias_kv``, ``add_zero_attn``, cross-attention) goes to the original forward, which is
    exact as long as no method has registered a delta. The attention itself runs in
    ``F.scaled_dot_product_attention``: it differs from torch's explicit softmax path by float
    rounding only (~1e-7), with the module's ``dropout`` on the attention weights in training.
    """
    qkv_site, proj_site = self._vpetl_sites
    plain = (key_padding_mask is None and attn_mask is None and not is_causal
             and _same_tensor(query, key) and _same_tensor(key, value)
             and not self.batch_first and self._qkv_same_embed_dim
             and self.bias_k is None and not self.add_zero_attn)
    if not plain:
        if (qkv_site.active or proj_site.active or getattr(self, '_vpetl_kv', None)
                or getattr(self, '_vpetl_heads', None)):
            raise NotImplementedError('PEFT deltas on nn.MultiheadAttention support plain '
                                      'self-attention without masks only')
        return type(self).forward(self, query, key, value, key_padding_mask, need_weights,
                                  attn_mask, average_attn_weights, is_causal)
    L, B, C = query.shape
    heads = self.num_heads
    qkv = qkv_site.apply(query, F.linear(query, self.in_proj_weight, self.in_proj_bias))
    q, k, v = (t.reshape(L, B * heads, C // heads).transpose(0, 1).reshape(
        B, heads, L, C // heads) for t in qkv.chunk(3, dim=-1))
    k, v = apply_kv_transforms(self, k, v)
    out = F.scaled_dot_product_attention(q, k, v,
                                         dropout_p=self.dropout if self.training else 0.0)
    out = apply_heads_transforms(self, q, out).permute(2, 0, 1, 3).reshape(L, B, C)
    out = proj_site.apply(out, F.linear(out, self.out_proj.weight, self.out_proj.bias))
    return out, None


@BACKBONE_SPECS.register_module()
class MMSegViTSpec(BackboneSpec):
    """mmseg ``VisionTransformer``: ``layers[i]`` are ``TransformerEncoderLayer``.

    The attention is mmcv's ``MultiheadAttention`` wrapping ``torch.nn.MultiheadAttention``, whose
    fused ``in_proj_weight`` and ``out_proj`` are used functionally: the spec installs a forward on
    the inner module (:func:`_mha_forward`) that routes both projections through their sites.
    ``attn`` is that inner module: its output ``(out, None)`` in ``(L, B, C)`` layout is the
    attention branch before mmcv's proj-dropout, drop-path and residual (the wrapper adds the
    residual itself). ``mlp`` is the FFN's ``layers`` (the FFN adds the residual). Tokens are
    ``[cls (when with_cls_token), H x W patches]``; the grid comes from the patch embedding.

    mmseg quirk: its ``TransformerEncoderLayer`` gives drop-path to the FFN only; the attention
    branch keeps mmcv's default ``dropout_layer`` (``Dropout(0)``). With ``qkv_bias=False``
    ``nn.MultiheadAttention`` drops the ``out_proj`` bias as well.
    """
    backbone_classes = ('mmseg.VisionTransformer', )
    accepts_extra_tokens = True

    def _build_blocks(self):
        self._own_hook(self.backbone.patch_embed, self._remember_grid)
        blocks = []
        for i, layer in enumerate(self.backbone.layers):
            mha = layer.attn.attn
            qkv = LinearSite(mha, 'in_proj_weight', 'in_proj_bias', hooked=False)
            proj = LinearSite(mha.out_proj, hooked=False)
            self._own_attribute(mha, '_vpetl_sites', (qkv, proj))
            self._install_forward(mha, _mha_forward)
            dims = mha.embed_dim
            sites = qkv_sites(qkv, dims)
            sites.update(proj=proj, fc1=LinearSite(layer.ffn.layers[0][0]),
                         fc2=LinearSite(layer.ffn.layers[1]))
            blocks.append(BlockInfo(i, 0, dims, layer, mha, layer.ffn.layers, layer.norm1,
                                    layer.norm2, sites))
        return blocks

    def on_attention_kv(self, block, fn):
        return self._add_transform(block.attn, '_vpetl_kv', fn)  # the installed forward reads

    def on_attention_heads(self, block, fn):
        return self._add_transform(block.attn, '_vpetl_heads', fn)

    def _remember_grid(self, module, args, output):
        self._grid = tuple(output[1])  # mmseg PatchEmbed returns (tokens, (H, W))

    def _layout(self, block, tokens, args):
        return grid_from_tokens(tokens.shape[1], self._grid)

    def adapt_state_dict(self, state_dict):
        """Resize a position table made at another image size to the backbone's ``img_size``.

        ``pos_embed`` is ``(1, 1 + S * S, C)``: the cls slot, then a square ``S x S`` grid
        (ViT-B/16 at 224 px: ``S = 14``). mmseg's own ``init_weights`` resizes it the same way
        (its ``resize_pos_embed``, ``interpolate_mode``) when ``init_cfg`` loads a checkpoint,
        but ``PEFTBackbone`` loads the weights itself, so a 224 px checkpoint would otherwise
        not fit a 512 px backbone (``(1, 1 + 32 * 32, C)``).
        """
        backbone = self.backbone
        theirs = state_dict.get('pos_embed')
        if theirs is None or theirs.shape == backbone.pos_embed.shape:
            return state_dict
        side = math.isqrt(theirs.shape[1] - 1)
        if side * side != theirs.shape[1] - 1:
            raise ValueError(f'pretrained pos_embed {tuple(theirs.shape)}: expected a cls slot '
                             'and a square grid')
        h, w = (s // backbone.patch_size for s in backbone.img_size)
        print_log(f'pretrained pos_embed: {side} x {side} grid resized to {h} x {w} '
                  f'({backbone.interpolate_mode})', logger='current')
        resized = backbone.resize_pos_embed(theirs, (h, w), (side, side),
                                            backbone.interpolate_mode)
        return dict(state_dict, pos_embed=resized)

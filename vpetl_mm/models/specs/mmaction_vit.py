"""Spec for mmaction ``VisionTransformer`` (VideoMAE style, ``models/backbones/vit_mae.py``)."""
import torch
import torch.nn.functional as F
from mmengine.logging import print_log

from vpetl_mm.registry import BACKBONE_SPECS

from .base import (BackboneSpec, BlockInfo, LinearSite, TokenLayout, apply_heads_transforms,
                   apply_kv_transforms, qkv_sites)


def _qkv_bias(attn):
    """The bias mmaction adds to ``qkv``: ``[q_bias, 0, v_bias]``, or the linear's own."""
    if hasattr(attn, 'q_bias'):
        return torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias))
    return attn.qkv.bias


def _attention_forward(self, x):
    """mmaction ``Attention.forward`` with the qkv output routed through its site and the
    attention product in ``F.scaled_dot_product_attention``.

    ``x``: ``(B, N, C)``. mmaction computes ``qkv`` with ``F.linear`` on ``self.qkv.weight`` and
    a bias assembled from ``q_bias``, zeros and ``v_bias``, so a hook on ``self.qkv`` never fires.
    mmaction's own forward builds the ``(B, heads, N, N)`` logits explicitly; SDPA gives the
    same result up to float rounding (~1e-7) without keeping them for backward (16 frames of
    224 px: 1,568 tokens, about 9x less attention memory), with ``attn_drop``'s rate on the
    attention weights in training.
    """
    B, N, C = x.shape
    qkv = F.linear(x, self.qkv.weight, _qkv_bias(self))
    qkv = self._vpetl_qkv_site.apply(x, qkv)
    qkv = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    k, v = apply_kv_transforms(self, k, v)
    out = F.scaled_dot_product_attention(
        q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0, scale=self.scale)
    x = apply_heads_transforms(self, q, out).transpose(1, 2).reshape(B, N, -1)
    return self.proj_drop(self.proj(x))


@BACKBONE_SPECS.register_module()
class MMActionViTSpec(BackboneSpec):
    """mmaction ``VisionTransformer``: ``blocks[i]`` with ``attn`` and an FFN ``mlp``.

    The attention's qkv site is served by a spec-installed forward (see
    :func:`_attention_forward`); with no delta registered it computes exactly what mmaction does.
    Merging touches ``qkv.weight`` only (the q/v biases live on the attention module). ``mlp`` is
    the FFN's ``layers`` (``add_identity=False``; drop-path is applied by the block). Tokens have
    no prefix; the grid is ``(T / tubelet, H / patch, W / patch)`` of the current input (read off
    the patch-embedding ``Conv3d`` stride).

    The original forward stays reachable as ``type(attn).forward``; while no delta is
    registered the installed one computes the same up to float rounding (its attention product
    runs in SDPA). With ``init_values > 0`` the block scales both branches by ``gamma_1`` /
    ``gamma_2`` after ``attn`` / ``mlp``, so anything added to those outputs is scaled too.
    """
    backbone_classes = ('mmaction.VisionTransformer', )
    accepts_extra_tokens = True
    grid_rank = 3

    def _build_blocks(self):
        blocks = []
        for i, block in enumerate(self.backbone.blocks):
            attn = block.attn
            dims = attn.embed_dims
            qkv = LinearSite(attn.qkv, bias_name=None, hooked=False,
                             bias_fn=lambda a=attn: _qkv_bias(a))
            self._own_attribute(attn, '_vpetl_qkv_site', qkv)
            self._install_forward(attn, _attention_forward)
            sites = qkv_sites(qkv, dims)
            sites.update(proj=LinearSite(attn.proj),
                         fc1=LinearSite(block.mlp.layers[0][0]),
                         fc2=LinearSite(block.mlp.layers[1]))
            blocks.append(BlockInfo(i, 0, dims, block, attn, block.mlp.layers, block.norm1,
                                    block.norm2, sites))
        return blocks

    def on_attention_kv(self, block, fn):
        return self._add_transform(block.attn, '_vpetl_kv', fn)  # the installed forward reads

    def on_attention_heads(self, block, fn):
        return self._add_transform(block.attn, '_vpetl_heads', fn)

    def _layout(self, block, tokens, args):
        t, h, w = self._input_shape[-3:]
        kt, kh, kw = self.backbone.patch_embed.projection.stride
        return TokenLayout(0, (t // kt, h // kh, w // kw))

    def adapt_state_dict(self, state_dict):
        """A checkpoint trained with another ``num_frames`` has a position table of another
        length. mmaction's default table is the fixed sinusoid of the token index (a buffer),
        so the backbone keeps its own; a learned table (``use_learnable_pos_emb``) cannot be
        resized and raises."""
        own = self.backbone.pos_embed
        theirs = state_dict.get('pos_embed')
        if theirs is None or theirs.shape == own.shape:
            return state_dict
        if isinstance(own, torch.nn.Parameter):
            raise ValueError(f'pretrained pos_embed has shape {tuple(theirs.shape)} but the '
                             f'backbone\'s learned table is {tuple(own.shape)}: build it with the '
                             'checkpoint\'s num_frames / img_size')
        print_log(f'pretrained pos_embed {tuple(theirs.shape)} differs from the backbone\'s '
                  f'{tuple(own.shape)} (another num_frames): the backbone keeps its own '
                  'sinusoidal table', logger='current')
        return dict(state_dict, pos_embed=own.detach().clone())

"""Spec for mmpretrain ``VisionTransformer`` (and subclasses such as DeiT)."""
from vpetl_mm.registry import BACKBONE_SPECS

from .base import (BackboneSpec, BlockInfo, LinearSite, apply_heads_transforms,
                   apply_kv_transforms, grid_from_tokens, qkv_sites)


@BACKBONE_SPECS.register_module()
class MMPretrainViTSpec(BackboneSpec):
    """mmpretrain ``VisionTransformer``: ``layers[i]`` are ``TransformerEncoderLayer``.

    Per block: ``attn`` is mmpretrain's ``MultiheadAttention`` (``qkv``, ``proj`` linears), ``mlp``
    is the FFN's ``layers`` (``fc1 = ffn.layers[0][0]``, ``fc2 = ffn.layers[1]``), before its
    drop-path and residual. Tokens are ``[prefix (cls), H x W patches]``; the grid is the patch
    resolution of the current input.
    """
    backbone_classes = ('mmpretrain.VisionTransformer', )
    accepts_extra_tokens = True

    def _build_blocks(self):
        self._own_hook(self.backbone.patch_embed, self._remember_grid)
        blocks = []
        for i, layer in enumerate(self.backbone.layers):
            dims = layer.embed_dims
            sites = qkv_sites(LinearSite(layer.attn.qkv), dims)
            sites.update(proj=LinearSite(layer.attn.proj),
                         fc1=LinearSite(layer.ffn.layers[0][0]),
                         fc2=LinearSite(layer.ffn.layers[1]))
            blocks.append(BlockInfo(i, 0, dims, layer, layer.attn, layer.ffn.layers,
                                    layer.ln1, layer.ln2, sites))
        return blocks

    def on_attention_kv(self, block, fn):
        return self._add_transform(self._wrap_product(block.attn), '_vpetl_kv', fn)

    def on_attention_heads(self, block, fn):
        return self._add_transform(self._wrap_product(block.attn), '_vpetl_heads', fn)

    def _wrap_product(self, attn):
        """mmpretrain's attention calls its instance attribute ``scaled_dot_product_attention``
        with ``(q, k, v)`` and gets the per-head product ``(B, heads, N, d)``; the first
        registration wraps it so keys / values and the product pass the transforms."""
        if not attn.__dict__.get('_vpetl_wrapped', False):
            product = attn.scaled_dot_product_attention

            def with_transforms(q, k, v, *args, **kwargs):
                k, v = apply_kv_transforms(attn, k, v)
                return apply_heads_transforms(attn, q, product(q, k, v, *args, **kwargs))

            self._own_attribute(attn, 'scaled_dot_product_attention', with_transforms)
            self._own_attribute(attn, '_vpetl_wrapped', True)
        return attn

    def _remember_grid(self, module, args, output):
        self._grid = tuple(output[1])  # PatchEmbed returns (tokens, (H, W))

    def _layout(self, block, tokens, args):
        return grid_from_tokens(tokens.shape[1], self._grid)

    def adapt_state_dict(self, state_dict):
        """Give the final norm to ``ln2`` when the backbone pools before norming.

        With ``final_norm=False, out_type='avg_featmap'`` the backbone applies ``ln2`` to the
        mean of the patch tokens (the pooled-token head DTL uses). A checkpoint converted from a
        ViT with a final norm carries that norm as ``ln1``; it is the same LayerNorm, applied
        after pooling instead of before.
        """
        bb = self.backbone
        if (not bb.final_norm and bb.out_type == 'avg_featmap' and 'ln1.weight' in state_dict
                and 'ln2.weight' not in state_dict):
            state_dict = dict(state_dict)
            state_dict['ln2.weight'] = state_dict.pop('ln1.weight')
            state_dict['ln2.bias'] = state_dict.pop('ln1.bias')
        return state_dict

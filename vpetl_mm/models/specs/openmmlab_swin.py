"""Spec for the OpenMMLab ``SwinTransformer`` of mmpretrain, mmseg and mmdet (one layout)."""
from mmengine.logging import print_log
from torch import nn

from vpetl_mm.registry import BACKBONE_SPECS

from .base import (BackboneSpec, BlockInfo, LinearSite, TokenLayout, add_window_bias_and_mask,
                   apply_heads_transforms, apply_kv_transforms, qkv_sites)


def _window_msa_forward(self, x, mask=None):
    """``WindowMSA.forward`` (identical in mmpretrain, mmseg and mmdet) with the keys and values
    passed through the registered transforms, which may prepend ``P`` tokens to every window:
    the relative-position bias and the shift mask get ``P`` zero columns for them.

    ``x``: ``(num_windows * B, N, C)``; ``mask``: ``(num_windows, N, N)`` or None.
    """
    B, N, C = x.shape
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    k, v = apply_kv_transforms(self, k, v)
    attn = (q * self.scale) @ k.transpose(-2, -1)
    area = self.window_size[0] * self.window_size[1]
    bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(
        area, area, -1).permute(2, 0, 1)
    attn = add_window_bias_and_mask(attn, bias, mask, self.num_heads)
    attn = self.attn_drop(self.softmax(attn))
    x = apply_heads_transforms(self, q, attn @ v).transpose(1, 2).reshape(B, N, C)
    return self.proj_drop(self.proj(x))


@BACKBONE_SPECS.register_module()
class OpenMMLabSwinSpec(BackboneSpec):
    """``SwinTransformer``: ``stages[s].blocks[b]`` are ``SwinBlock(x, hw_shape)``.

    mmpretrain, mmseg and mmdet share this module layout (checked against their 1.2.0 / 1.2.2 /
    3.3.0 sources), so one spec serves the three.

    Per block: ``attn`` is ``ShiftWindowMSA`` whose ``w_msa`` holds the ``qkv`` and ``proj``
    linears; ``mlp`` is the FFN's ``layers``. Tokens are ``(B, H*W, C)`` with no prefix; the grid
    is the block's ``hw_shape`` argument.
    """
    backbone_classes = ('mmpretrain.SwinTransformer', 'mmseg.SwinTransformer',
                        'mmdet.SwinTransformer')

    def _build_blocks(self):
        blocks = []
        for s, stage in enumerate(self.backbone.stages):
            for block in stage.blocks:
                msa = block.attn.w_msa
                dims = msa.embed_dims
                sites = qkv_sites(LinearSite(msa.qkv), dims)
                sites.update(proj=LinearSite(msa.proj),
                             fc1=LinearSite(block.ffn.layers[0][0]),
                             fc2=LinearSite(block.ffn.layers[1]))
                blocks.append(BlockInfo(len(blocks), s, dims, block, block.attn,
                                        block.ffn.layers, block.norm1, block.norm2, sites))
        return blocks

    def on_attention_kv(self, block, fn):
        """Keys and values of every window, ``(num_windows * B, heads, N, d)``; ``fn`` may only
        prepend tokens (the bias and mask are padded for them). The window attention's forward
        is replaced by an equivalent one on the first registration."""
        return self._add_transform(self._window_msa(block), '_vpetl_kv', fn)

    def on_attention_heads(self, block, fn):
        """The per-head product of every window, ``(num_windows * B, heads, N, d)``, through the
        same installed forward."""
        return self._add_transform(self._window_msa(block), '_vpetl_heads', fn)

    def _window_msa(self, block):
        return self._install_forward(block.attn.w_msa, _window_msa_forward)

    def merge_tokens(self, stage, tokens):
        """The stage's ``PatchMerging`` (``nn.Unfold``, norm, reduction) on tokens that fill
        their ``k x k`` neighbourhood: Unfold orders the merged channels ``c * k^2 + position``,
        so the merged vector is every channel repeated ``k^2`` times."""
        merging = self.backbone.stages[stage].downsample
        if merging is None:
            return tokens
        kh, kw = merging.sampler.kernel_size
        x = tokens.repeat_interleave(kh * kw, dim=-1)
        if getattr(merging, 'use_post_norm', False):
            x = merging.reduction(x)
            return merging.norm(x) if merging.norm is not None else x
        x = merging.norm(x) if merging.norm is not None else x
        return merging.reduction(x)

    def _layout(self, block, tokens, args):
        return TokenLayout(0, tuple(args[1]))

    # -- stage outputs of the dense Swin (mmseg / mmdet) -------------------------------------
    @property
    def dense_stages(self) -> bool:
        """Whether every stage hands its pre-merging tokens to an output norm and the neck (the
        mmseg / mmdet Swin; mmpretrain's stages return only the merged tokens)."""
        return type(self.backbone).__module__.split('.')[0] in ('mmseg', 'mmdet')

    def _check_dense(self, what: str) -> None:
        if not self.dense_stages:
            raise TypeError(f'{what} needs the stage outputs of a dense Swin (mmseg / mmdet); '
                            f'{type(self.backbone).__module__.split(".")[0]}.'
                            f'{type(self.backbone).__name__} has none')

    def on_patch_tokens(self, fn):
        """Call ``fn(tokens)`` with the patch embedding ``(B, H*W, C)`` of every forward."""
        return self.on_output(self.backbone.patch_embed, lambda out: fn(out[0]))

    def on_stage_output(self, stage: int, fn):
        """Replace the tokens ``x`` ``(B, H*W, C)`` that ``stage`` hands to its output norm and
        the neck by ``fn(x, hw)``; the merged tokens the next stage reads are unchanged."""
        self._check_dense('on_stage_output')

        def replace(out):
            x_down, down_hw, x, hw = out
            return x_down, down_hw, fn(x, hw).to(x.dtype), hw

        return self.on_output(self.backbone.stages[stage], replace)

    def downsample(self, stage: int, tokens, hw):
        """``tokens`` ``(B, H*W, C)`` on grid ``hw`` through the frozen patch merging ending
        ``stage``: ``(tokens', hw')`` (unchanged after the last stage)."""
        merging = self.backbone.stages[stage].downsample
        return (tokens, hw) if merging is None else merging(tokens, hw)

    def stage_norms(self):
        """The output norms ``norm{i}`` of the dense Swin (one per ``out_indices`` entry)."""
        self._check_dense('stage_norms')
        return [getattr(self.backbone, f'norm{i}') for i in range(self.num_stages)
                if isinstance(getattr(self.backbone, f'norm{i}', None), nn.Module)]

    def adapt_state_dict(self, state_dict):
        """Output norms ``norm{i}`` (one per ``out_indices`` entry) that the checkpoint lacks
        keep the backbone's own LayerNorm initialisation (weight 1, bias 0).

        A classification checkpoint holds at most the last one (the release's final ``norm``,
        ``norm3`` once converted); a dense Swin (mmseg / mmdet, ``out_indices=(0, 1, 2, 3)``)
        has four, and those toolboxes, loading such a checkpoint non-strictly, leave the others
        at that initialisation (as the Mona repository does). Without this the strict load of
        ``PEFTBackbone`` would refuse every classification checkpoint for a dense Swin.
        """
        own = self.backbone.state_dict()
        kept = []
        for i in getattr(self.backbone, 'out_indices', ()):
            keys = [k for k in own if k.startswith(f'norm{i}.')]
            if keys and not any(k in state_dict for k in keys):
                state_dict.update({k: own[k] for k in keys})
                kept.append(f'norm{i}')
        if kept:
            print_log(f'pretrained checkpoint has no output norm {", ".join(kept)}: kept at the '
                      'LayerNorm initialisation (weight 1, bias 0), as mmseg / mmdet leave them',
                      logger='current')
        return state_dict

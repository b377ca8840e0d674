"""Spec for mmaction ``SwinTransformer3D`` (Video Swin, ``models/backbones/swin.py``)."""
from vpetl_mm.registry import BACKBONE_SPECS

from .base import (BackboneSpec, BlockInfo, LinearSite, TokenLayout, add_window_bias_and_mask,
                   apply_kv_transforms, qkv_sites)


def _window_attention_3d_forward(self, x, mask=None):
    """mmaction ``WindowAttention3D.forward`` (same operations in the same order) with the keys
    and values passed through the registered transforms, which may prepend ``P`` tokens to
    every window: the relative-position bias and the shift mask get ``P`` zero columns for
    them, so the prefixes are never biased or masked and the softmax runs over prefix and
    window keys. With no tokens added it computes exactly mmaction's forward.

    ``x``: ``(num_windows * B, N, C)``; ``mask``: ``(num_windows, N, N)`` (0 / -100) or None.
    mmaction indexes the bias with ``relative_position_index[:N, :N]`` (the window may be
    clamped to the feature size); kept as it is.
    """
    B_, N, C = x.shape
    qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads,
                              C // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    k, v = apply_kv_transforms(self, k, v)
    q = q * self.scale
    attn = q @ k.transpose(-2, -1)
    bias = self.relative_position_bias_table[
        self.relative_position_index[:N, :N].reshape(-1)].reshape(N, N, -1)
    bias = bias.permute(2, 0, 1).contiguous()  # nH, N, N
    attn = add_window_bias_and_mask(attn, bias, mask, self.num_heads)
    attn = self.softmax(attn)
    attn = self.attn_drop(attn)
    x = (attn @ v).transpose(1, 2).reshape(B_, N, C)
    x = self.proj(x)
    x = self.proj_drop(x)
    return x


@BACKBONE_SPECS.register_module()
class MMActionSwin3DSpec(BackboneSpec):
    """mmaction ``SwinTransformer3D``: ``layers[s].blocks[b]`` are ``SwinTransformerBlock3D``.

    Blocks are called ``(x, mask_matrix)`` with ``x`` of shape ``(B, D, H, W, C)``; methods see
    it as ``(B, D*H*W, C)`` tokens with layout ``(D, H, W)`` and their block-output result is put
    back into 5-D. Per block: ``attn`` is ``WindowAttention3D`` (``qkv``, ``proj`` linears);
    ``mlp`` is the ``Mlp`` (``fc1``, ``fc2``), whose output is the branch before drop-path.

    Unlike the 2-D Swins (whose ``ShiftWindowMSA`` returns ``(B, H*W, C)`` in grid order), the
    ``attn`` output here is window-partitioned, ``(B * nW, Wd*Wh*Ww, C)`` of the padded and
    shifted grid: per-token methods may act on it, grid-aware ones must use the block hooks. The
    window is clamped to the feature size (``get_window_size``), so with few frames the temporal
    window and shift shrink.

    Keys and values (:meth:`on_attention_kv`) are reached through a forward installed on the
    block's ``WindowAttention3D`` at the first registration (see
    :func:`_window_attention_3d_forward`); the original stays reachable as
    ``type(attn).forward``. There is no per-head hook (:meth:`on_attention_heads`) here.
    """
    backbone_classes = ('mmaction.SwinTransformer3D', )
    grid_rank = 3

    def _build_blocks(self):
        blocks = []
        for s, layer in enumerate(self.backbone.layers):
            for block in layer.blocks:
                dims = block.attn.qkv.in_features
                sites = qkv_sites(LinearSite(block.attn.qkv), dims)
                sites.update(proj=LinearSite(block.attn.proj), fc1=LinearSite(block.mlp.fc1),
                             fc2=LinearSite(block.mlp.fc2))
                blocks.append(BlockInfo(len(blocks), s, dims, block, block.attn, block.mlp,
                                        block.norm1, block.norm2, sites))
        return blocks

    def on_attention_kv(self, block, fn):
        """Keys and values of every window, ``(num_windows * B, heads, N, d)`` (the windows of a
        sample adjacent); ``fn`` may only prepend tokens (the bias and the shift mask are padded
        with zero columns for them). The window attention's forward is replaced by an
        equivalent one on the first registration."""
        return self._add_transform(self._window_attention(block), '_vpetl_kv', fn)

    def _window_attention(self, block):
        return self._install_forward(block.attn, _window_attention_3d_forward)

    def _tokens_in(self, block, args):
        x = args[0]
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def _layout(self, block, tokens, args):
        return TokenLayout(0, tuple(args[0].shape[1:4]))

    def _output_tokens(self, block, output):
        return output.reshape(output.shape[0], -1, output.shape[-1])

    def _tokens_out(self, block, output, tokens):
        return tokens.reshape(output.shape)

    def adapt_state_dict(self, state_dict):
        """Video Swin checkpoints in mmaction 0.x layout (the Video-Swin and V-PETL releases,
        e.g. ``swin_base_patch244_window877_kinetics400_22k.pth``) name the output norm
        ``norm``; mmaction 1.x names it ``norm{i}`` after the last out index: rename it."""
        target = f'norm{max(self.backbone.out_indices)}'
        if hasattr(self.backbone, target) and not hasattr(self.backbone, 'norm'):
            state_dict = {(target + k[4:] if k.startswith('norm.') else k): v
                          for k, v in state_dict.items()}
        return state_dict

"""Spec for the OpenMMLab ``SwinTransformer`` of mmpretrain, mmseg and mmdet (one layout)."""
from vpetl_mm.registry import BACKBONE_SPECS

from .base import BackboneSpec, BlockInfo, LinearSite, TokenLayout, qkv_sites


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

    def _layout(self, block, tokens, args):
        return TokenLayout(0, tuple(args[1]))

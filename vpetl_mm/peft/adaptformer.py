"""AdaptFormer: a scaled bottleneck in parallel with the MLP of every block.

Chen et al., "AdaptFormer: Adapting Vision Transformers for Scalable Visual Recognition",
NeurIPS 2022.
"""
from typing import Optional, Sequence, Union

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks
from .layers import BottleneckAdapter


@PEFT_METHODS.register_module()
class AdaptFormer(PEFTMethod):
    """``y = h + DropPath(MLP(LN2(h))) + s * up(ReLU(down(LN_a(h))))`` in every selected block.

    ``h`` is the block's post-attention residual stream (the input of its second norm); the
    branch output is added to the block output, outside the MLP's drop-path, as in the authors'
    code. Its module is attached to the block as ``adaptformer``.

    Args:
        bottleneck (int): bottleneck width (8 in the V-PETL benchmark on ViT-B/16).
        scale (float | 'learnable'): the fixed scale ``s`` (1.0 in V-PETL, 0.1 in the paper's
            video setting), or a learnable scalar.
        dropout (float): dropout on the bottleneck. Defaults to 0.1.
        input_norm (bool): a trainable LayerNorm on the branch input (the authors' ``"in"``
            option, the V-PETL default).
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, bottleneck 8 with the input norm: 12 x 14,600 = 175,200 parameters.
    """
    placement = 'bottleneck parallel to the MLP, reading the post-attention stream'
    paper = ('Chen et al., AdaptFormer: Adapting Vision Transformers for Scalable Visual '
             'Recognition, NeurIPS 2022')

    def __init__(self, bottleneck: int = 8, scale: Union[float, str] = 1.0,
                 dropout: float = 0.1, input_norm: bool = True,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if isinstance(scale, str) and scale != 'learnable':
            raise ValueError(f"AdaptFormer scale={scale!r}: a number or 'learnable'")
        self.bottleneck = bottleneck
        self.scale = scale
        self.dropout = dropout
        self.input_norm = input_norm
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'AdaptFormer blocks'):
            branch = spec.add_module(block.module, 'adaptformer', BottleneckAdapter(
                block.dims, self.bottleneck, 'relu', self.dropout, self.input_norm, self.scale))
            spec.on_parallel(block, 'attn_residual', 'block_output', branch)

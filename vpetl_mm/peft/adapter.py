"""Adapter: a sequential bottleneck after the MLP of every block.

Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019, in the single-adapter
placement of the V-PETL benchmark (after the MLP only), optionally with the second adapter of the
Mona repository's Swin baseline (after the attention residual).
"""
from typing import Optional, Sequence

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks
from .layers import BottleneckAdapter


@PEFT_METHODS.register_module()
class Adapter(PEFTMethod):
    """``m -> m + up(Drop(GELU(down(m))))`` applied to the MLP branch output ``m``.

    The adapter sits inside the MLP residual branch, before drop-path:
    ``y = h + DropPath(m + Adapter(m))`` with ``m = MLP(LN2(h))``. Its module is attached to the
    block as ``adapter``.

    With ``attn_residual=True`` a second adapter acts on the residual stream after the attention,
    ``h <- h + Adapter_attn(h)`` with ``h = x + DropPath(attn(LN1(x)))``, before it feeds ``LN2``
    and the MLP's skip: the two adapters per block of the Mona repository's Adapter baseline on
    Swin (its ``my_module_1`` / ``my_module_2``). That module is attached as ``adapter_attn``.

    The benchmark's code writes zeros into both projections, which would leave the weights at
    zero forever (both gradients vanish); here ``down`` is kaiming-uniform and only ``up`` is zero,
    which keeps the identity at initialisation and trains.

    Args:
        bottleneck (int): width ``d`` of the bottleneck (8 on ViT-B/16 in the benchmark).
        blocks (sequence of int, optional): global block indices; all when ``None``.
        dropout (float): dropout after the activation (0.1 in the Mona repository). Defaults
            to 0.
        attn_residual (bool): add the second adapter after the attention residual. Defaults to
            False.

    ViT-B/16, d=8: 12 x (768 x 8 + 8 + 8 x 768 + 768) = 156,768 parameters; Swin-B, d=64 with
    ``attn_residual``: 3,107,328.
    """
    placement = 'bottleneck after the MLP, inside its residual branch, before drop-path'
    paper = 'Houlsby et al., Parameter-Efficient Transfer Learning for NLP, ICML 2019'

    def __init__(self, bottleneck: int = 8, blocks: Optional[Sequence[int]] = None,
                 dropout: float = 0.0, attn_residual: bool = False):
        super().__init__()
        self.bottleneck = bottleneck
        self.dropout = dropout
        self.attn_residual = attn_residual
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'Adapter blocks'):
            adapter = spec.add_module(block.module, 'adapter', BottleneckAdapter(
                block.dims, self.bottleneck, dropout=self.dropout))
            spec.on_output(block.mlp, lambda out, adapter=adapter: out + adapter(out))
            if self.attn_residual:
                first = spec.add_module(block.module, 'adapter_attn', BottleneckAdapter(
                    block.dims, self.bottleneck, dropout=self.dropout))
                spec.on_attention_residual(block, lambda h, layout, first=first: h + first(h))

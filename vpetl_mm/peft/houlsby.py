"""Houlsby adapter: two sequential bottleneck adapters per block.

Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019.
"""
from typing import Optional, Sequence

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks
from .layers import BottleneckAdapter


@PEFT_METHODS.register_module(name='Houlsby')
@PEFT_METHODS.register_module()
class HoulsbyAdapter(PEFTMethod):
    """An adapter after the attention output projection and one after the MLP of every block.

    ``a = proj(...)`` becomes ``A_attn(a)`` (before the attention's dropout, layer scale and
    drop-path) and the MLP output ``m`` becomes ``A_mlp(m)`` (before drop-path), each
    ``A(h) = h + up(GELU(down(h)))``. Modules: ``adapter_attn`` and ``adapter_mlp`` attached to
    each block. The attention adapter acts on the ``proj`` linear's output, so it works wherever
    the spec has a ``proj`` site (every family here).

    Args:
        bottleneck (int): width ``m`` of both bottlenecks. Defaults to 8.
        init_std (float): std of the truncated-normal init of the projections. Defaults to 1e-2
            (the paper's near-identity scale).
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, m=8: 12 x 2 x (768 x 8 + 8 + 8 x 768 + 768) = 313,536 parameters.
    """
    placement = ('two sequential bottlenecks: after the attention output projection and after '
                 'the MLP, inside their residual branches')
    paper = 'Houlsby et al., Parameter-Efficient Transfer Learning for NLP, ICML 2019'

    def __init__(self, bottleneck: int = 8, init_std: float = 1e-2,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if bottleneck < 1:
            raise ValueError(f'Houlsby bottleneck must be >= 1, got {bottleneck}')
        self.bottleneck = bottleneck
        self.init_std = init_std
        self.blocks = blocks

    def attach(self, backbone, spec):
        for block in select_blocks(spec, self.blocks, 'Houlsby blocks'):
            attn_adapter, mlp_adapter = (spec.add_module(block.module, name, BottleneckAdapter(
                block.dims, self.bottleneck, init='trunc_normal', init_std=self.init_std,
                residual=True)) for name in ('adapter_attn', 'adapter_mlp'))
            block.sites['proj'].add_output_transform(
                lambda x, y, adapter=attn_adapter: adapter(y))
            spec.on_output(block.mlp, mlp_adapter)

"""E3VA: an adapter highway beside a frozen Swin, with no backpropagation through the backbone.

Yin et al., "Parameter-efficient is not sufficient: Exploring Parameter, Memory, and Time
Efficient Adapter Tuning for Dense Predictions", ACM MM 2024. No code was released; the choices
the paper's description leaves open are ours and named in the class docstring.
"""
import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod
from .layers import NoGradBlocks
from .lorand import SynthesizedLinear


class HighwayAdapter(nn.Module):
    """``a -> up(GELU(down(a)))`` with low-rank synthesised projections (the dual low-rank
    structure), ``(B, N, C) -> (B, N, C)``; ``up`` starts at zero."""

    def __init__(self, dims: int, bottleneck: int, branches: int, kernel: int):
        super().__init__()
        self.down = SynthesizedLinear(dims, bottleneck, branches, kernel)
        self.up = SynthesizedLinear(bottleneck, dims, branches, kernel)
        for p in (self.up.b, self.up.bias):
            nn.init.zeros_(p)

    def forward(self, a: Tensor) -> Tensor:
        return self.up(nn.functional.gelu(self.down(a)))


@PEFT_METHODS.register_module()
class E3VA(PEFTMethod):
    """A highway ``h`` beside the frozen stages of an mmseg / mmdet Swin: ``h`` starts as the
    (detached) patch embedding; every block adds ``A_attn(sg(a)) + A_mlp(sg(m))`` of its
    attention-branch output ``a`` and MLP output ``m``; at a stage's end ``h`` replaces the
    stage output that the backbone norms for the neck (the output norms train) and continues
    through the stage's frozen patch merging. No gradient enters the backbone: its blocks run
    with autograd off, only the taps and the highway keep activations.

    Our choices where the description is silent: the adapters are LoRand-shaped (two
    synthesised low-rank projections, GELU, bottleneck ``C / factor``; this reproduces the
    published 1.20M on Swin-B), the up projection starts at zero, the taps are the branch
    outputs before their residual adds.

    Modules: ``peft.<name>.adapters``; the backbone's output norms are set trainable.

    Args:
        branches (int), kernel (int), factor (int): the adapters' synthesis (as LoRand).
            Defaults to 2, 8, 2.

    Swin-B: 1,203,456 adapter parameters (+ the output norms, 3,840 with out_indices 0-3).
    """
    paper = ('Yin et al., Parameter-efficient is not sufficient: Exploring Parameter, Memory, '
             'and Time Efficient Adapter Tuning for Dense Predictions (E3VA), ACM MM 2024')
    placement = ('adapter highway on detached attention / MLP outputs of every block, replacing '
                 'the stage outputs fed to the neck')

    def __init__(self, branches: int = 2, kernel: int = 8, factor: int = 2):
        super().__init__()
        self.branches = branches
        self.kernel = kernel
        self.factor = factor
        self._h = None
        self._no_grad = NoGradBlocks()

    def attach(self, backbone, spec):
        if not getattr(spec, 'dense_stages', False):
            raise TypeError(f'E3VA feeds the stage outputs of a dense Swin (mmseg / mmdet '
                            f'SwinTransformer); got {type(backbone).__module__.split(".")[0]}.'
                            f'{type(backbone).__name__}')
        self.adapters = nn.ModuleList()
        device = spec.blocks[0].norm1.weight.device
        for block in spec.blocks:
            pair = nn.ModuleList(HighwayAdapter(block.dims, block.dims // self.factor,
                                                self.branches, self.kernel) for _ in range(2))
            self.adapters.append(pair.to(device))
            spec.on_output(block.attn, lambda out, p=pair: self._add(p[0], out))
            spec.on_output(block.mlp, lambda out, p=pair: self._add(p[1], out))
        self._no_grad.install(spec, spec.blocks)
        spec.on_patch_tokens(self._start)
        for stage in range(spec.num_stages):
            spec.on_stage_output(stage, lambda x, hw, s=stage: self._stage_end(spec, s, hw))
        for norm in spec.stage_norms():
            for p in norm.parameters():
                spec.tune(p)

    def begin_forward(self):
        self._h = None
        self._no_grad.reset()

    def _start(self, tokens: Tensor):
        self._h = tokens.detach()

    def _add(self, adapter: HighwayAdapter, branch: Tensor):
        """Block taps run inside the frozen blocks: the adapter step re-enables autograd."""
        with torch.enable_grad() if self._no_grad.caller_grad() else torch.no_grad():
            self._h = self._h + adapter(branch.detach())

    def _stage_end(self, spec, stage: int, hw) -> Tensor:
        """The highway ``(B, H*W, C)`` as the output of ``stage`` (grid ``hw``); it continues
        through the stage's frozen patch merging."""
        highway = self._h
        self._h, _ = spec.downsample(stage, highway, hw)
        return highway

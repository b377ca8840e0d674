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
        toolbox = type(backbone).__module__.split('.')[0]
        if toolbox not in ('mmseg', 'mmdet') or not hasattr(backbone, 'stages'):
            raise TypeError(f'E3VA feeds the stage outputs of a dense Swin (mmseg / mmdet '
                            f'SwinTransformer); got {toolbox}.{type(backbone).__name__}')
        self.adapters = nn.ModuleList()
        device = spec.blocks[0].norm1.weight.device
        for block in spec.blocks:
            pair = nn.ModuleList(HighwayAdapter(block.dims, block.dims // self.factor,
                                                self.branches, self.kernel) for _ in range(2))
            self.adapters.append(pair.to(device))
            block.attn.register_forward_hook(
                lambda m, a, out, p=pair: self._add(p[0], out))
            block.mlp.register_forward_hook(
                lambda m, a, out, p=pair: self._add(p[1], out))
        self._no_grad.install(spec.blocks)
        backbone.patch_embed.register_forward_hook(
            lambda m, a, out: self._start(out[0]))
        for i, stage in enumerate(backbone.stages):
            stage.register_forward_hook(lambda m, a, out: self._stage_end(m, out))
            norm = getattr(backbone, f'norm{i}', None)
            if norm is not None:
                for p in norm.parameters():
                    p.requires_grad_(True)

    def begin_forward(self):
        self._h = None
        self._no_grad.reset()

    def _start(self, tokens: Tensor):
        self._h = tokens.detach()

    def _add(self, adapter: HighwayAdapter, branch: Tensor):
        """Block taps run inside the frozen blocks: the adapter step re-enables autograd."""
        with torch.enable_grad() if self._no_grad.caller_grad() else torch.no_grad():
            self._h = self._h + adapter(branch.detach())

    def _stage_end(self, stage, out):
        """``(x_down, down_hw, x, hw)`` -> the highway as the stage output ``x``; the highway
        continues through the stage's frozen patch merging."""
        x_down, down_hw, _, hw = out
        highway = self._h
        if stage.downsample is not None:
            self._h, _ = stage.downsample(highway, hw)
        return x_down, down_hw, highway.to(x_down.dtype), hw

"""SSF: scale and shift the features after every norm and linear of the backbone.

Lian et al., "Scaling & Shifting Your Features: A New Baseline for Efficient Model Tuning",
NeurIPS 2022.
"""
import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod


class ScaleShift(nn.Module):
    """``x -> gamma * x + beta`` over the channel dimension ``dim`` of ``x``.

    ``gamma ~ N(1, init_std)`` and ``beta ~ N(0, init_std)`` (the authors use 0.02), so SSF does not
    start exactly at the identity.
    """

    def __init__(self, channels: int, dim: int, init_std: float):
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.empty(channels).normal_(1.0, init_std))
        self.shift = nn.Parameter(torch.empty(channels).normal_(0.0, init_std))

    def forward(self, x: Tensor) -> Tensor:
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


@PEFT_METHODS.register_module()
class SSF(PEFTMethod):
    """Scale-shift after: the patch-embedding convolution, ``norm1`` and ``norm2`` of every block,
    its ``qkv``, ``proj``, ``fc1`` (before the activation) and ``fc2`` linears, and the norms
    outside the blocks (final / output norms).

    Every scale-shift follows a linear map or a LayerNorm affine, so :meth:`merge` folds it in
    exactly: ``W' = diag(gamma) W`` and ``b' = gamma * b + beta``. Where the adapted layer has no
    bias of its own (the mmaction ViT's fused qkv, mmseg's ViT patch embedding with its default
    ``patch_bias=False``) the shift cannot be folded in and :meth:`merge` raises.

    Modules: ``ssf`` attached to each adapted linear / norm / conv (``layers.0.attn.qkv.ssf``).

    Args:
        init_std (float): std of the scale / shift init. Defaults to 0.02.

    ViT-B/16: 2 x (768 + 12 x 8,448 + 768) = 205,824 parameters.
    """
    mergeable = True
    paper = ('Lian et al., Scaling & Shifting Your Features: A New Baseline for Efficient '
             'Model Tuning, NeurIPS 2022')
    placement = ('scale and shift after the patch embedding, every norm, qkv, proj, fc1, fc2 '
                 'and the final norm')

    def __init__(self, init_std: float = 0.02):
        super().__init__()
        self.init_std = init_std
        self._sites = []    # (LinearSite, ScaleShift)
        self._wrapped = []  # (norm or conv module, ScaleShift)

    def attach(self, backbone, spec):
        conv = spec.patch_projection()
        self._wrap_module(spec, conv, conv.out_channels, dim=1)
        for block in spec.blocks:
            for norm in (block.norm1, block.norm2):
                self._wrap_module(spec, norm, norm.weight.shape[0], dim=-1)
            for role in ('qkv', 'proj', 'fc1', 'fc2'):
                site = block.sites[role]
                ssf = spec.add_module(site.owner, 'ssf',
                                      ScaleShift(site.out_features, -1, self.init_std))
                site.add_output_transform(lambda x, y, ssf=ssf: ssf(y))
                self._sites.append((site, ssf))
        for norm in spec.outer_norms():
            self._wrap_module(spec, norm, norm.weight.shape[0], dim=-1)

    def _wrap_module(self, spec, module, channels, dim):
        if hasattr(module, 'ssf'):
            return  # the same module reached twice (e.g. a shared norm)
        ssf = spec.add_module(module, 'ssf', ScaleShift(channels, dim, self.init_std))
        spec.on_output(module, ssf)
        self._wrapped.append((module, ssf))

    def fold(self):
        # check everything first, so a refused merge leaves the model untouched
        for site, _ in self._sites:
            if site.bias is None:
                raise ValueError(f'cannot fold SSF into {type(site.owner).__name__}.'
                                 f'{site.weight_name}: the linear has no bias of its own to '
                                 'take the shift')
        for module, _ in self._wrapped:
            if getattr(module, 'weight', None) is None or getattr(module, 'bias', None) is None:
                raise ValueError(f'cannot fold SSF into {type(module).__name__}: it has no '
                                 'bias of its own to take the shift (e.g. mmseg ViT with '
                                 'patch_bias=False, a LayerNorm without affine)')
        for site, ssf in self._sites:
            site.merge_affine_(ssf.scale, ssf.shift)
        for module, ssf in self._wrapped:
            scale = ssf.scale.view([-1] + [1] * (module.weight.dim() - 1))
            module.weight.mul_(scale)
            module.bias.mul_(ssf.scale).add_(ssf.shift)

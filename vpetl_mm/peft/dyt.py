"""DyT: dynamic tuning, a token dispatcher that lets tokens skip the frozen MLP.

Zhao et al., "Dynamic Tuning Towards Parameter and Inference Efficiency for ViT Adaptation",
NeurIPS 2024 (the released "MLP dispatch" variant).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod, select_blocks


def gumbel_sigmoid(logits: Tensor, tau: float) -> Tensor:
    """Hard 0/1 decisions with a straight-through gradient: ``sigmoid((l + g1 - g2) / tau)``
    with Gumbel noise ``g1, g2``, thresholded at 0.5 in the forward pass."""
    g1 = -torch.empty_like(logits).exponential_().log()
    g2 = -torch.empty_like(logits).exponential_().log()
    soft = torch.sigmoid((logits + g1 - g2) / tau)
    return (soft > 0.5).to(soft.dtype) - soft.detach() + soft


class MoEAdapter(nn.Module):
    """The DyT paper's MoE adapter: ``E`` bottleneck experts merged per sample by a router.

    ``alpha = softmax(router(mean over tokens of h))`` ``(B, E)``; the sample's adapter has
    ``W_down = sum_e alpha_e W_down^e`` (and so for ``W_up`` and the biases), so it costs one
    adapter plus the merge. Experts are initialised as the single adapter (``down``
    kaiming-uniform, ``up`` zero), the router truncated-normal (std 0.02, uniform ``alpha``).
    The router input (the token mean) and its softmax are our reading of the paper, which
    publishes no code for it.
    """

    def __init__(self, dims: int, bottleneck: int, experts: int):
        super().__init__()
        self.router = nn.Linear(dims, experts)
        nn.init.trunc_normal_(self.router.weight, std=0.02)
        nn.init.zeros_(self.router.bias)
        self.down_weight = nn.Parameter(torch.empty(experts, bottleneck, dims))
        for weight in self.down_weight.data:
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.down_bias = nn.Parameter(torch.zeros(experts, bottleneck))
        self.up_weight = nn.Parameter(torch.zeros(experts, dims, bottleneck))
        self.up_bias = nn.Parameter(torch.zeros(experts, dims))

    def routing(self, h: Tensor) -> Tensor:
        """``h`` ``(B, N, C)`` -> expert weights ``(B, E)``."""
        return self.router(h.mean(dim=1)).softmax(dim=-1)

    def forward(self, h: Tensor, dropout: nn.Module) -> Tensor:
        """``h`` ``(B, N, C)`` -> ``up_b(Drop(ReLU(down_b(h))))`` with per-sample merged weights."""
        alpha = self.routing(h).to(h.dtype)
        down = torch.einsum('be,eoc->boc', alpha, self.down_weight.to(h.dtype))
        up = torch.einsum('be,eco->bco', alpha, self.up_weight.to(h.dtype))
        z = torch.einsum('bnc,boc->bno', h, down) + (alpha @ self.down_bias.to(h.dtype))[:, None]
        z = dropout(torch.relu(z))
        return torch.einsum('bno,bco->bnc', z, up) + (alpha @ self.up_bias.to(h.dtype))[:, None]


class DyTBlockModules(nn.Module):
    """One block's dispatcher ``Linear(C, 1)`` and parallel adapter
    ``s * up(Drop(ReLU(down(h))))``; ``down`` kaiming-uniform, ``up`` and biases zero, the
    dispatcher truncated-normal (std 0.02), as the authors initialise them. With ``experts > 1``
    the adapter is a :class:`MoEAdapter` (module ``moe``) instead of ``down`` / ``up``."""

    def __init__(self, dims: int, bottleneck: int, scale: float, dropout: float,
                 experts: int = 1):
        super().__init__()
        self.dispatcher = nn.Linear(dims, 1)
        nn.init.trunc_normal_(self.dispatcher.weight, std=0.02)
        nn.init.zeros_(self.dispatcher.bias)
        if experts > 1:
            self.moe = MoEAdapter(dims, bottleneck, experts)
        else:
            self.down = nn.Linear(dims, bottleneck)
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down.bias)
            self.up = nn.Linear(bottleneck, dims)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)
        self.dropout = nn.Dropout(dropout)
        self.scale = scale

    def adapter(self, h: Tensor) -> Tensor:
        """``h`` ``(B, N, C)`` -> the adapter branch ``(B, N, C)``."""
        if hasattr(self, 'moe'):
            return self.scale * self.moe(h, self.dropout)
        return self.scale * self.up(self.dropout(torch.relu(self.down(h))))


@PEFT_METHODS.register_module()
class DyT(PEFTMethod):
    """Per block, after the attention residual ``h``: a dispatcher picks the patch tokens that go
    through the frozen MLP; the others skip it; an adapter on ``h`` runs beside it for all tokens:
    ``y = h + m * MLP(LN2(h)) + s * up(Drop(ReLU(down(h))))``, ``m`` in {0, 1} per token (prefix
    tokens such as cls always 1).

    Training: ``m`` is a Gumbel-sigmoid sample (temperature ``tau``) with a straight-through
    gradient, and :meth:`rate_loss` ``= weight * (mean(m over blocks, batch, patch tokens) -
    target_rate)^2`` is added to the model's losses by ``vpetl_mm.DyTHook`` (in the default
    runtime), which also logs the activation rate; training without it raises. Inference:
    ``m = [sigmoid(logit) > 0.5]`` and the skipped tokens really skip
    the MLP (gather, MLP on the kept tokens, scatter), so the FLOPs saving is time saved.

    Self-distillation (``distill=True``, the authors' 2024.10 update): every training step also
    runs the same model with every token through the MLPs as the teacher and adds its
    cross-entropy and ``KL(teacher || student)`` (teacher detached) to the losses (DyTHook, for
    models with ``extract_feat`` and a ``head``: mmpretrain classifiers).

    MoE adapter (``experts > 1``, the paper's enhanced adapter; not in the authors' code): the
    block's adapter is ``experts`` bottleneck experts merged per sample by a router on the token
    mean (:class:`MoEAdapter`), at the cost of one adapter at run time.

    Modules: ``dyt`` attached to each block.

    Args:
        bottleneck (int): adapter width. Defaults to 64 (the quoted 1.19M on ViT-B/16).
        scale (float): adapter scale ``s``. Defaults to 1.
        target_rate (float): the activation rate the rate loss pulls toward. Defaults to 0.5.
        rate_weight (float): weight of the rate loss. Defaults to 2.
        tau (float): Gumbel-sigmoid temperature. Defaults to 5.
        dropout (float): adapter dropout. Defaults to 0.1.
        distill (bool): add the self-distillation losses. Defaults to False.
        experts (int): adapter experts; 1 is the plain adapter. Defaults to 1.
        blocks (sequence of int, optional): global block indices; all when ``None``.

    ViT-B/16, bottleneck 64: 12 x (769 + 2 x 768 x 64 + 64 + 768) = 1,198,860 parameters;
    with 4 experts 12 x (769 + 3,076 + 4 x 99,136) = 4,804,668.
    """
    paper = ('Zhao et al., Dynamic Tuning Towards Parameter and Inference Efficiency for ViT '
             'Adaptation (DyT), NeurIPS 2024')
    placement = ('token dispatcher before the MLP (skipped tokens bypass it) and a parallel '
                 'adapter on the attention residual')

    def __init__(self, bottleneck: int = 64, scale: float = 1.0, target_rate: float = 0.5,
                 rate_weight: float = 2.0, tau: float = 5.0, dropout: float = 0.1,
                 distill: bool = False, experts: int = 1,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__()
        if experts < 1:
            raise ValueError(f'DyT experts must be >= 1, got {experts}')
        if not 0.0 <= target_rate <= 1.0:
            raise ValueError(f'DyT target_rate must be in [0, 1], got {target_rate}')
        self.bottleneck = bottleneck
        self.scale = scale
        self.target_rate = target_rate
        self.rate_weight = rate_weight
        self.tau = tau
        self.dropout = dropout
        self.distill = distill
        self.experts = experts
        self.complete = False  # the self-distillation teacher: every token through the MLP
        self.blocks = blocks
        self._state: Dict[int, Tuple[Tensor, Tensor]] = {}  # block -> (mask (B, N), adapter)
        self._rates: List[Tensor] = []  # this forward, per block: mean mask of patch tokens
        self._first = None  # index of the first dispatching block
        self._kept: Optional[Tensor] = None  # patch tokens through the MLP since the last reset
        self._seen = 0  # patch tokens dispatched since the last reset
        self.rate_loss_attached = False  # set by vpetl_mm.engine.hooks.add_dyt_rate_loss

    def attach(self, backbone, spec):
        blocks = select_blocks(spec, self.blocks, 'DyT blocks')
        self._first = blocks[0].index
        for block in blocks:
            modules = DyTBlockModules(block.dims, self.bottleneck, self.scale, self.dropout,
                                      self.experts)
            spec.add_module(block.module, 'dyt', modules)
            layouts = {}
            spec.on_block_input(block, lambda t, layout, d=layouts: d.update(last=layout))
            spec.on_input(block.norm2, lambda h, i=block.index, mod=modules, d=layouts:
                          self._dispatch(h, mod, d['last'], i))
            spec.replace_forward(block.mlp, lambda forward, z, i=block.index:
                                 self._mlp(z, forward, i))

    def begin_forward(self):
        self._state = {}  # (the rates stay until the next forward: the loss reads them)

    def _dispatch(self, h: Tensor, modules: DyTBlockModules, layout, index: int):
        """Decide, from the residual stream ``h`` ``(B, ..., C)``, which tokens use the MLP."""
        if self.training and not self.rate_loss_attached:
            raise RuntimeError('DyT trains without its rate loss: add '
                               "dict(type='vpetl_mm.DyTHook') to custom_hooks (the vpetl_mm "
                               'default runtime has it) or call '
                               'vpetl_mm.engine.hooks.add_dyt_rate_loss(model)')
        tokens = h.reshape(h.shape[0], -1, h.shape[-1])
        if self.complete:  # teacher pass: nothing skipped, nothing counted
            self._state[index] = (tokens.new_ones(tokens.shape[:2]), modules.adapter(tokens))
            return
        logits = modules.dispatcher(tokens[:, layout.num_prefix:]).squeeze(-1)  # (B, P)
        if self.training:
            decision = gumbel_sigmoid(logits, self.tau)
        else:
            decision = (logits > 0).to(tokens.dtype)  # sigmoid(l) > 0.5
        prefix = decision.new_ones(tokens.shape[0], layout.num_prefix)
        mask = torch.cat([prefix, decision], dim=1)  # (B, N)
        if index == self._first:
            self._rates = []
        self._rates.append(decision.mean())
        kept = decision.detach().sum()
        self._kept = kept if self._kept is None else self._kept + kept
        self._seen += decision.numel()
        self._state[index] = (mask, modules.adapter(tokens))

    def _mlp(self, z: Tensor, mlp_forward, index: int) -> Tensor:
        """``z`` = LN2(h), ``(B, ..., C)`` -> ``m * MLP(z) + adapter(h)``."""
        mask, adapted = self._state.pop(index)
        flat = z.reshape(z.shape[0], -1, z.shape[-1])
        if self.training or self.complete:
            out = mlp_forward(flat) * mask.unsqueeze(-1)
        else:  # only the kept tokens go through the MLP
            keep = mask.reshape(-1).nonzero().squeeze(1)
            rows = flat.reshape(-1, flat.shape[-1])
            computed = mlp_forward(rows.index_select(0, keep))
            out = computed.new_zeros(rows.shape[0], computed.shape[-1])
            out = out.index_copy(0, keep, computed).reshape(flat.shape[:2] + (-1, ))
        return (out + adapted).reshape(z.shape[:-1] + (-1, ))

    def rate_loss(self) -> Tensor:
        """``weight * (mean activation over the last forward's blocks - target)^2``."""
        if not self._rates:
            raise RuntimeError('DyT.rate_loss needs a forward pass first')
        rate = torch.stack(self._rates).mean()
        return self.rate_weight * (rate - self.target_rate)**2

    def activation_rate(self, reset: bool = True) -> float:
        """Fraction of patch tokens that went through the MLP since the last reset."""
        rate = float(self._kept) / self._seen if self._seen else float('nan')
        if reset:
            self._kept, self._seen = None, 0
        return rate

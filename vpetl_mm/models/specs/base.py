"""Backbone specs: where a PEFT method finds the roles it speaks of in a concrete backbone.

A method never names a backbone's modules. It asks the spec for

* the blocks, in forward order (:class:`BlockInfo`: index, stage, width, the block module and its
  ``attn`` / ``mlp`` branch modules and norms);
* a :class:`LinearSite` per linear role of a block: ``qkv`` (and its row slices ``q``, ``k``,
  ``v``), ``proj``, ``fc1``, ``fc2``. A site adds registered output deltas to the linear map and
  can fold a weight update into the frozen weight (merge);
* block input/output hooks that see the token sequence as ``(B, N, C)`` together with its
  :class:`TokenLayout` (prefix tokens such as cls, then a spatial or spatio-temporal grid);
* the other hook points a method may use (see "Hook points" in :class:`BackboneSpec`).

Every hook point returns an :class:`~vpetl_mm.models.specs.record.AttachHandle` and writes what it
did to the record of the method being attached, so that the method can be disabled, detached and
reattached (:mod:`vpetl_mm.models.specs.record`). Methods add modules with :meth:`add_module` and
train backbone tensors with :meth:`tune`; they never register torch hooks or replace a forward
themselves.

One spec subclass per backbone family lives in this package and is registered in
``BACKBONE_SPECS``; :func:`get_spec` picks the one whose ``backbone_classes`` match.
"""
import types
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpetl_mm.registry import BACKBONE_SPECS

from .record import (AttachHandle, AttachRecord, AttributeAttachment, CallAttachment,
                     HookAttachment, ModuleAttachment, TunedTensor, keep)

LINEAR_ROLES = ('qkv', 'q', 'k', 'v', 'proj', 'fc1', 'fc2')


@dataclass(frozen=True)
class TokenLayout:
    """How a ``(B, N, C)`` token sequence is arranged.

    Attributes:
        num_prefix (int): leading tokens that are not part of the grid (cls, distillation, ...).
        grid (tuple[int]): the grid of the remaining tokens, ``(H, W)`` or ``(T, H, W)``;
            ``N == num_prefix + prod(grid)``.
    """
    num_prefix: int
    grid: Tuple[int, ...]


@dataclass(eq=False)
class LowRankTerm:
    """A low-rank output delta ``d = rank_dropout(input_dropout(x) @ down^T) @ up^T``.

    Registered with :meth:`LinearSite.add_low_rank`. A site evaluates all its terms together:
    one product of ``x`` with the stacked ``down`` factors (one pass over ``x`` for q, k and v)
    and one ``addmm`` of the stacked ``up`` factors into the linear's output, each ``up`` placed
    at its rows. No zero-padded full-width delta is materialised.

    Attributes:
        factors (callable): ``() -> (down, up)``, ``down`` ``(r, in_features)`` and ``up``
            ``(len(rows), r)`` with any scale already folded in (called on every forward, so
            factors built from shared tensors stay differentiable).
        input_dropout (nn.Module, optional): dropout on the input ``x`` (LoRA).
        rank_dropout (nn.Module, optional): dropout on ``x @ down^T`` ``(..., r)`` (FacT).
    """
    factors: Callable[[], Tuple[Tensor, Tensor]]
    input_dropout: Optional[nn.Module] = None
    rank_dropout: Optional[nn.Module] = None


def _dropping(module: Optional[nn.Module]) -> bool:
    """Whether ``module`` (a dropout or None) changes its input in the current mode."""
    return module is not None and module.training and getattr(module, 'p', 1.0) > 0


class LinearSite:
    """One linear map ``y = x W^T + b`` inside a backbone, or a row slice of one.

    Methods register output deltas with :meth:`add_delta`; a delta is a callable ``fn(x) -> d``
    taking the linear's input ``x`` of shape ``(..., in_features)`` and returning ``d`` of shape
    ``(..., len(rows))`` that is added to those output rows. Low-rank deltas go through
    :meth:`add_low_rank`, which evaluates them without padding. How the deltas reach the forward
    pass is the spec's business (a forward hook on an ``nn.Linear`` or a spec-patched attention
    forward calling :meth:`apply`).

    Args:
        owner (nn.Module): module that owns the weight; new method modules are attached to it,
            so their state-dict keys sit next to the weight's.
        weight_name (str): attribute of ``owner`` holding the weight ``(out, in)``.
        bias_name (str, optional): attribute holding the bias, if any.
        rows (slice, optional): the output rows this site covers (``q``/``k``/``v`` of a fused
            ``qkv``); ``None`` for all rows.
        parent (LinearSite, optional): the full site a row slice belongs to.
        hooked (bool): route deltas through a forward hook on ``owner`` (an ``nn.Linear`` called
            as a module). False where the spec's own forward calls :meth:`apply` because the
            backbone uses the weight functionally.
        bias_fn (callable, optional): returns the full bias the forward adds when it is not a
            tensor of ``owner`` (assembled from parts): read by :meth:`frozen`.
    """

    def __init__(self, owner: nn.Module, weight_name: str = 'weight',
                 bias_name: Optional[str] = 'bias', rows: Optional[slice] = None,
                 parent: Optional['LinearSite'] = None, hooked: bool = True,
                 bias_fn: Optional[Callable[[], Tensor]] = None):
        self.owner = owner
        self.bias_fn = bias_fn
        self.hooked = hooked
        self.weight_name = weight_name
        self.bias_name = bias_name
        self.parent = parent
        full_out = getattr(owner, weight_name).shape[0]
        self.rows = rows if rows is not None else slice(0, full_out)
        self._deltas: List[Tuple[slice, Callable]] = []
        self._low_rank: List[Tuple[slice, LowRankTerm]] = []
        self._transforms: List[Callable] = []
        self._hook = None

    @property
    def in_features(self) -> int:
        return getattr(self.owner, self.weight_name).shape[1]

    @property
    def out_features(self) -> int:
        return self.rows.stop - self.rows.start

    @property
    def weight(self) -> Tensor:
        """The ``(out_features, in_features)`` weight rows of this site (a view)."""
        return getattr(self.owner, self.weight_name)[self.rows]

    @property
    def bias(self) -> Optional[Tensor]:
        """The bias entries of this site (a view), or None when the linear has no bias."""
        bias = getattr(self.owner, self.bias_name, None) if self.bias_name else None
        return None if bias is None else bias[self.rows]

    def frozen(self, x: Tensor) -> Tensor:
        """The frozen map of this site's rows as the forward computes it, ``x W^T + b``
        ``(..., in) -> (..., out)``, without deltas (for tokens a method adds, such as
        prompts)."""
        root = self.root()
        bias = root.bias_fn() if root.bias_fn is not None else root.bias
        return F.linear(x, self.weight, None if bias is None else bias[self.rows])

    def linear(self, x: Tensor) -> Tensor:
        """The whole linear as the backbone's forward computes it, ``(..., in) -> (..., out)``:
        the frozen map plus every registered delta and output transform (for tokens a method
        adds, such as prompts, which must see the same map as the backbone's tokens)."""
        if self.parent is not None:
            raise ValueError('LinearSite.linear computes a whole linear, not a row slice')
        return self.apply(x, self.frozen(x))

    @property
    def active(self) -> bool:
        """Whether any delta or output transform is registered on this linear."""
        root = self.root()
        return bool(root._deltas or root._low_rank or root._transforms)

    def root(self) -> 'LinearSite':
        return self.parent.root() if self.parent is not None else self

    def add_delta(self, fn: Callable[[Tensor], Tensor]) -> AttachHandle:
        """Add ``fn(x)`` to this site's output rows on every forward; returns its handle."""
        return self._keep('_deltas', (self.rows, fn), fn)

    def add_low_rank(self, term: LowRankTerm) -> LowRankTerm:
        """Add the low-rank ``term`` to this site's output rows on every forward; returns it
        (pass it to :meth:`remove_delta` to take it away)."""
        self._keep('_low_rank', (self.rows, term), term)
        return term

    def add_output_transform(self, fn: Callable[[Tensor, Tensor], Tensor]) -> AttachHandle:
        """Replace the output ``y`` (all rows, deltas included) by ``fn(x, y)`` on every
        forward, ``x`` being the linear's input; returns its handle."""
        if self.parent is not None:
            raise ValueError('output transforms act on a whole linear, not on a row slice')
        return self._keep('_transforms', fn, fn)

    def _keep(self, kind: str, entry, fn) -> AttachHandle:
        """Register ``entry`` in the root's list ``kind`` and record it (undone by removing
        ``fn``)."""
        root = self.root()

        def add():
            getattr(root, kind).append(entry)
            root._on_first_delta()

        return keep(CallAttachment(add, lambda: root.remove_delta(fn)))

    def remove_delta(self, fn: Callable[[Tensor], Tensor]) -> None:
        """Remove a delta or an output transform."""
        root = self.root()
        root._deltas = [(r, f) for r, f in root._deltas if f is not fn]
        root._low_rank = [(r, t) for r, t in root._low_rank if t is not fn]
        root._transforms = [f for f in root._transforms if f is not fn]
        if not root.active and root._hook is not None:
            root._hook.remove()
            root._hook = None

    def apply(self, x: Tensor, out: Tensor) -> Tensor:
        """Return ``out`` plus every registered delta evaluated at input ``x``, then passed
        through the output transforms ``fn(x, out)``."""
        root = self.root()
        if root._low_rank:
            out = root._add_low_rank(x, out)
        total = out.shape[-1]
        for rows, fn in root._deltas:
            delta = fn(x)
            if rows.start == 0 and rows.stop == total:
                out = out + delta
            else:  # only the delta's rows are added; the rest is copied once
                out = torch.cat([out[..., :rows.start], out[..., rows] + delta,
                                 out[..., rows.stop:]], dim=-1)
        for fn in root._transforms:
            out = fn(x, out)
        return out

    def _add_low_rank(self, x: Tensor, out: Tensor) -> Tensor:
        """``out`` ``(..., total)`` plus every :class:`LowRankTerm`, in one ``addmm``."""
        total = out.shape[-1]
        downs, ups = [], []
        for rows, term in self._low_rank:
            down, up = term.factors()
            downs.append(down)
            if rows.start != 0 or rows.stop != total:  # (len(rows), r) -> (total, r)
                up = F.pad(up, (0, 0, rows.start, total - rows.stop))
            ups.append(up)
        terms = [term for _, term in self._low_rank]
        if any(_dropping(t.input_dropout) for t in terms):  # each term sees its own mask
            h = torch.cat([(x if t.input_dropout is None else t.input_dropout(x)) @ d.t()
                           for t, d in zip(terms, downs)], -1)
        else:  # one pass over x for all terms
            h = x @ (downs[0] if len(downs) == 1 else torch.cat(downs)).t()
        if any(_dropping(t.rank_dropout) for t in terms):
            parts = h.split([d.shape[0] for d in downs], -1)
            h = torch.cat([p if t.rank_dropout is None else t.rank_dropout(p)
                           for t, p in zip(terms, parts)], -1)
        up = ups[0] if len(ups) == 1 else torch.cat(ups, 1)
        flat = out.reshape(-1, total)
        h = h.reshape(-1, h.shape[-1]).to(flat.dtype)
        return torch.addmm(flat, h, up.t().to(flat.dtype)).view(out.shape)

    def _on_first_delta(self) -> None:
        """Route :meth:`apply` into the forward pass (default: a hook on an ``nn.Linear``)."""
        if self._hook is not None or not self.hooked:
            return
        if not isinstance(self.owner, nn.Linear):
            raise TypeError(f'cannot hook {type(self.owner).__name__}: the spec must call '
                            'LinearSite.apply itself (hooked=False)')

        def hook(module, args, out):
            return self.apply(args[0], out)

        self._hook = self.owner.register_forward_hook(hook)

    @torch.no_grad()
    def merge_(self, delta_weight: Tensor, delta_bias: Optional[Tensor] = None) -> None:
        """Add ``delta_weight`` ``(out, in)`` (and ``delta_bias``) to the frozen weight in place."""
        weight = getattr(self.owner, self.weight_name)
        weight[self.rows] += delta_weight.to(weight.dtype)
        if delta_bias is not None:
            bias = getattr(self.owner, self.bias_name, None) if self.bias_name else None
            if bias is None:
                raise ValueError(f'cannot merge a bias into {type(self.owner).__name__}, '
                                 'which has no bias')
            bias[self.rows] += delta_bias.to(bias.dtype)

    @torch.no_grad()
    def merge_affine_(self, scale: Tensor, shift: Tensor) -> None:
        """Fold ``y -> scale * y + shift`` (per output row) into the weight and bias."""
        weight = getattr(self.owner, self.weight_name)
        bias = getattr(self.owner, self.bias_name, None) if self.bias_name else None
        if bias is None:
            raise ValueError(f'cannot fold a shift into {type(self.owner).__name__}.'
                             f'{self.weight_name}: the linear has no bias of its own')
        weight[self.rows] *= scale.to(weight.dtype)[:, None]
        bias[self.rows] = bias[self.rows] * scale.to(bias.dtype) + shift.to(bias.dtype)

    @torch.no_grad()
    def merge_input_affine_(self, matrix: Tensor, offset: Tensor) -> None:
        """Fold an affine map ``x -> matrix x + offset`` applied to this linear's input.

        ``W' = W matrix`` and ``b' = W offset + b`` (``matrix`` is ``(in, in)``). Needs a bias.
        """
        if self.parent is not None:
            raise ValueError('an input map acts on the whole linear, not on a row slice')
        weight = getattr(self.owner, self.weight_name)
        bias = getattr(self.owner, self.bias_name, None) if self.bias_name else None
        if bias is None:
            raise ValueError(f'cannot fold an input offset into {type(self.owner).__name__}.'
                             f'{self.weight_name}: the linear has no bias of its own')
        bias += weight @ offset.to(weight.dtype)
        weight.copy_(weight @ matrix.to(weight.dtype))

    def slice(self, rows: slice) -> 'LinearSite':
        """A site over ``rows`` of this one (e.g. the ``q`` rows of ``qkv``)."""
        start = self.rows.start + rows.start
        return LinearSite(self.owner, self.weight_name, self.bias_name,
                          slice(start, start + rows.stop - rows.start), parent=self,
                          hooked=self.hooked, bias_fn=self.bias_fn)


@dataclass
class BlockInfo:
    """One transformer block as a method sees it.

    Attributes:
        index (int): global block index in forward order (0-based, across stages).
        stage (int): stage index (always 0 for plain ViTs).
        dims (int): token width ``C`` at this block.
        module (nn.Module): the block.
        attn (nn.Module): module whose output is the attention branch before the residual add.
        mlp (nn.Module): module whose output is the MLP branch before drop-path and residual add.
        norm1, norm2 (nn.Module): the pre-attention and pre-MLP norms.
        sites (dict): ``role -> LinearSite`` for the roles in :data:`LINEAR_ROLES`.
    """
    index: int
    stage: int
    dims: int
    module: nn.Module
    attn: nn.Module
    mlp: nn.Module
    norm1: nn.Module
    norm2: nn.Module
    sites: Dict[str, LinearSite] = field(default_factory=dict)


class BackboneSpec:
    """Base of the per-family specs; see the module docstring.

    Subclasses set ``backbone_classes`` (``'package.ClassName'`` strings matched against the
    backbone's class) and implement :meth:`_build_blocks` and :meth:`_layout`. What the spec
    itself installs (its own hooks, replaced forwards) is kept in its own record and taken off
    by :meth:`release`.

    Hook points (each returns an :class:`AttachHandle`; "replace" hooks return the new value,
    observers return nothing):

    ==========================  ================================================================
    :meth:`on_block_input`      observe a block's input tokens ``(B, N, C)`` and layout
    :meth:`replace_block_input` replace them (extra tokens where :attr:`accepts_extra_tokens`)
    :meth:`on_block_output`     replace a block's output tokens
    :meth:`on_attention_kv`     keys / values ``(B, heads, N, d)`` before the attention product
    :meth:`on_attention_heads`  the per-head product before the heads merge
    :meth:`on_attention_residual`  the stream ``h = x + attn`` that feeds ``norm2`` and the skip
    :meth:`on_parallel`         run a branch on one point of a block, add it at a later one
    :meth:`on_output`           replace the output of a module the spec hands out
                                (``BlockInfo.attn`` / ``mlp`` / ``norm1`` / ``norm2``,
                                :meth:`patch_projection`, :meth:`outer_norms`, the backbone)
    :meth:`on_input`            observe or replace the first input of such a module
    :meth:`replace_forward`     run ``fn(original_forward, *args)`` instead of its forward
    :meth:`on_gradient`         pass a backbone tensor's gradient through ``fn``
    ``LinearSite.add_*``        deltas and output transforms of the linear roles
    :meth:`add_module`          add a method module inside the backbone
    :meth:`tune`                train a backbone tensor in place
    ==========================  ================================================================
    """
    backbone_classes: Sequence[str] = ()
    #: grid rank of the tokens: 2 for images, 3 for video
    grid_rank: int = 2
    #: whether a block accepts a longer token sequence (extra tokens after the prefix) through
    #: :meth:`replace_block_input`: true for plain ViTs, false for windowed (Swin) blocks
    accepts_extra_tokens: bool = False

    def __init__(self, backbone: nn.Module):
        self.backbone = backbone
        self._own = AttachRecord('spec')
        self._input_shape: Optional[torch.Size] = None
        self._own_hook(backbone, self._remember_input, pre=True)
        self.blocks: List[BlockInfo] = self._build_blocks()
        self.num_stages = 1 + max(b.stage for b in self.blocks)

    @classmethod
    def matches(cls, backbone: nn.Module) -> bool:
        for klass in type(backbone).__mro__:
            if f'{klass.__module__.split(".")[0]}.{klass.__name__}' in cls.backbone_classes:
                return True
        return False

    def _remember_input(self, module, args):
        self._input_shape = args[0].shape

    def release(self) -> None:
        """Take off what the spec installed itself (call once no method is attached)."""
        self._own.detach()
        self._own.forget()

    # -- to implement -----------------------------------------------------------------------
    def _build_blocks(self) -> List[BlockInfo]:
        raise NotImplementedError(f'{type(self).__name__} must list its blocks')

    def _layout(self, block: BlockInfo, tokens: Tensor, args: tuple) -> TokenLayout:
        """The layout of ``tokens`` ``(B, N, C)`` entering ``block`` called with ``args``."""
        raise NotImplementedError(f'{type(self).__name__} must describe its token layout')

    # -- recorded primitives ----------------------------------------------------------------
    @staticmethod
    def _hook(module: nn.Module, hook: Callable, pre: bool = False) -> HookAttachment:
        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        return HookAttachment(lambda: register(hook))

    def _own_hook(self, module: nn.Module, hook: Callable, pre: bool = False) -> None:
        """A hook of the spec itself (input shapes, grids), kept until :meth:`release`."""
        self._own.keep(self._hook(module, hook, pre))

    def _own_attribute(self, module: nn.Module, name: str, value) -> None:
        """Set ``module.<name>`` for the spec itself (an installed forward), until
        :meth:`release`."""
        self._own.keep(AttributeAttachment(module, name, value))

    def _install_forward(self, module: nn.Module, forward: Callable) -> nn.Module:
        """Replace ``module.forward`` by ``forward`` bound to it, once (later calls keep it);
        the class's own forward stays reachable as ``type(module).forward``."""
        if not module.__dict__.get('_vpetl_wrapped', False):
            self._own_attribute(module, 'forward', types.MethodType(forward, module))
            self._own_attribute(module, '_vpetl_wrapped', True)
        return module

    def _add_transform(self, attn: nn.Module, kind: str, fn: Callable) -> AttachHandle:
        """Append ``fn`` to the list ``attn.<kind>`` the installed attention forward reads."""
        if kind not in attn.__dict__:
            self._own_attribute(attn, kind, [])
        items = attn.__dict__[kind]
        return keep(CallAttachment(lambda: items.append(fn),
                                   lambda: items.remove(fn) if fn in items else None))

    def add_module(self, parent: nn.Module, name: str, module: nn.Module) -> nn.Module:
        """Add the method module ``module`` as ``parent.<name>`` (state-dict key next to the
        weights it adapts), on ``parent``'s device; refuses a taken name. Returns ``module``."""
        keep(ModuleAttachment(parent, name, module))
        return module

    def tune(self, tensor: Tensor) -> AttachHandle:
        """Train the frozen backbone ``tensor`` in place. Its current value is kept (on the CPU)
        so that disabling or detaching the method shows the original again. A tensor an earlier
        method already trains is left to that method."""
        if tensor.requires_grad:
            return AttachHandle([])
        return keep(TunedTensor(tensor))

    def on_gradient(self, tensor: Tensor, fn: Callable[[Tensor], Optional[Tensor]]):
        """Pass the gradient of the backbone ``tensor`` through ``fn`` (a masking of sparse
        updates); returns a handle."""
        return keep(HookAttachment(lambda: tensor.register_hook(fn)))

    def on_output(self, module: nn.Module, fn: Callable[[object], object]) -> AttachHandle:
        """Replace the output of ``module`` (one the spec hands out) by ``fn(output)``; ``fn``
        returning ``None`` leaves it (an observer). The output is what the module returns:
        ``(B, N, C)`` tokens for the branch modules and norms of a block."""
        return keep(self._hook(module, lambda m, args, out: fn(out)))

    def on_input(self, module: nn.Module, fn: Callable[[object], object]) -> AttachHandle:
        """Replace the first positional input of ``module`` by ``fn(x)``; ``None`` leaves it."""

        def hook(m, args):
            new = fn(args[0])
            return None if new is None else (new, ) + tuple(args[1:])

        return keep(self._hook(module, hook, pre=True))

    def replace_forward(self, module: nn.Module, fn: Callable) -> AttachHandle:
        """Run ``fn(forward, *args, **kwargs)`` instead of ``module``'s forward, ``forward``
        being the one it had (a method that decides per token whether the MLP runs)."""
        original = module.forward
        return keep(AttributeAttachment(
            module, 'forward', lambda *args, **kwargs: fn(original, *args, **kwargs)))

    # -- block hooks ------------------------------------------------------------------------
    def _tokens_in(self, block: BlockInfo, args: tuple) -> Tensor:
        """The block input as ``(B, N, C)``; override for other layouts."""
        return args[0]

    def _tokens_out(self, block: BlockInfo, output, tokens: Tensor):
        """Put ``tokens`` ``(B, N, C)`` back into the block's output structure."""
        return tokens

    def _output_tokens(self, block: BlockInfo, output) -> Tensor:
        return output

    def on_block_input(self, block: BlockInfo,
                       fn: Callable[[Tensor, TokenLayout], None]) -> AttachHandle:
        """Call ``fn(tokens, layout)`` with every input of ``block``."""

        def hook(module, args):
            tokens = self._tokens_in(block, args)
            fn(tokens, self._layout(block, tokens, args))

        return keep(self._hook(block.module, hook, pre=True))

    def on_attention_kv(self, block: BlockInfo,
                        fn: Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]) -> AttachHandle:
        """Pass the keys and values of ``block``'s attention, ``(B, heads, N, d)`` each, through
        ``fn(k, v) -> (k, v)`` before the attention product; ``fn`` may add key / value tokens
        (prefixes). Only specs that run the attention product themselves or can reach it."""
        raise TypeError(f'{type(self).__name__} gives no access to the attention keys and '
                        'values (windowed attention with position bias and masks)')

    def on_attention_heads(self, block: BlockInfo,
                           fn: Callable[[Tensor, Tensor], Tensor]) -> AttachHandle:
        """Pass the per-head attention result of ``block`` through ``fn(q, out) -> out`` before
        the heads are merged and projected: ``q`` the queries (unscaled) and ``out`` the
        attention product, ``(B', heads, N, d)`` each (``B'`` is ``B``, or ``windows * B`` for
        windowed attention). A branch parallel to the attention (an unbound prefix) adds to
        ``out`` here and so passes the frozen output projection. Same availability as
        :meth:`on_attention_kv`."""
        raise TypeError(f'{type(self).__name__} gives no access to the per-head attention '
                        'product (windowed attention with position bias and masks)')

    def replace_block_input(self, block: BlockInfo,
                            fn: Callable[[Tensor, TokenLayout], Tensor]) -> AttachHandle:
        """Replace the token input of ``block`` by ``fn(tokens, layout)``.

        ``fn`` may change the number of tokens only where :attr:`accepts_extra_tokens` holds
        (then the spec's block output hook callers must restore the original count before the
        backbone's own code sees the sequence again).
        """

        def hook(module, args):
            tokens = self._tokens_in(block, args)
            new = fn(tokens, self._layout(block, tokens, args))
            return (self._tokens_out(block, args[0], new), ) + tuple(args[1:])

        return keep(self._hook(block.module, hook, pre=True))

    def on_attention_residual(self, block: BlockInfo,
                              fn: Callable[[Tensor, TokenLayout], Tensor]) -> AttachHandle:
        """Replace the residual stream between the attention and the MLP of ``block`` (the sum
        ``h = x + attn(...)`` that feeds both ``norm2`` and the MLP's skip connection) by
        ``fn(tokens, layout)``, ``(B, N, C) -> (B, N, C)``.

        The blocks pass one tensor to ``norm2`` and to the skip, so the new value is written
        into it in place (from ``fn`` of a copy, which keeps autograd intact).
        """
        layouts = {}

        def remember(module, args):
            tokens = self._tokens_in(block, args)
            layouts['last'] = self._layout(block, tokens, args)

        def replace(module, args):
            h = args[0]
            flat = h.clone().reshape(h.shape[0], -1, h.shape[-1])
            h.copy_(fn(flat, layouts['last']).reshape(h.shape))

        return keep(self._hook(block.module, remember, pre=True),
                    self._hook(block.norm2, replace, pre=True))

    def on_block_output(self, block: BlockInfo,
                        fn: Callable[[Tensor, TokenLayout], Tensor]) -> AttachHandle:
        """Replace the output of ``block`` by ``fn(tokens, layout)``."""
        layouts = {}

        def pre_hook(module, args):
            tokens = self._tokens_in(block, args)
            layouts['last'] = self._layout(block, tokens, args)

        def hook(module, args, output):
            tokens = self._output_tokens(block, output)
            new = fn(tokens, layouts.pop('last'))
            return self._tokens_out(block, output, new)

        return keep(self._hook(block.module, pre_hook, pre=True),
                    self._hook(block.module, hook))

    #: where :meth:`on_parallel` can read a block: the attention's input (``norm1``'s output),
    #: the residual stream after the attention (``norm2``'s input), the MLP's input (``norm2``'s
    #: output)
    PARALLEL_SOURCES = ('attn_input', 'attn_residual', 'mlp_input')
    #: where it can add: the residual stream after the attention, the block output
    PARALLEL_TARGETS = ('attn_residual', 'block_output')

    def on_parallel(self, block: BlockInfo, source: str, target: str,
                    fn: Callable[[Tensor], Tensor]) -> AttachHandle:
        """A branch beside an operation of ``block``: ``fn`` runs on the tokens at ``source``
        (one of :attr:`PARALLEL_SOURCES`) and its result ``(..., C)`` is added at ``target``
        (one of :attr:`PARALLEL_TARGETS`), which must come later in the block."""
        if source not in self.PARALLEL_SOURCES or target not in self.PARALLEL_TARGETS:
            raise ValueError(f'on_parallel source={source!r}, target={target!r}: sources are '
                             f'{self.PARALLEL_SOURCES}, targets {self.PARALLEL_TARGETS}')
        if target == 'attn_residual' and source != 'attn_input':
            raise ValueError(f'on_parallel: {source!r} comes after the attention residual')
        pending = {}

        def run(value):
            pending['out'] = fn(value)

        def add(tokens, layout):
            return tokens + pending.pop('out').reshape(tokens.shape)

        if source == 'attn_input':
            read = self.on_output(block.norm1, run)
        elif source == 'mlp_input':
            read = self.on_output(block.norm2, run)
        else:
            read = self.on_input(block.norm2, run)
        write = (self.on_attention_residual(block, add) if target == 'attn_residual' else
                 self.on_block_output(block, add))
        return AttachHandle(read.entries + write.entries, read.record)

    def merge_tokens(self, stage: int, tokens: Tensor) -> Tensor:
        """Pass ``tokens`` ``(B, L, C)`` of ``stage`` through the frozen patch merging that ends
        it, each token as if it filled the merged neighbourhood: ``(B, L, C')``. Only for
        hierarchical specs."""
        raise TypeError(f'{type(self).__name__} has no patch merging between stages')

    # -- modules outside the blocks ---------------------------------------------------------
    def patch_projection(self) -> nn.Module:
        """The convolution that embeds the patches (its output channels are the tokens)."""
        for module in self.backbone.patch_embed.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                return module
        raise TypeError(f'{type(self).__name__}: no patch-embedding convolution found')

    def outer_norms(self) -> List[nn.Module]:
        """LayerNorms that are direct children of the backbone (final / output norms)."""
        return [m for m in self.backbone.children() if isinstance(m, nn.LayerNorm)]

    # -- state dict -------------------------------------------------------------------------
    def adapt_state_dict(self, state_dict: dict) -> dict:
        """Adjust a pretrained state dict to this backbone's configuration (default: as is)."""
        return state_dict


def apply_kv_transforms(attn: nn.Module, k: Tensor, v: Tensor) -> Tuple[Tensor, Tensor]:
    """Keys and values ``(B, heads, N, d)`` through the transforms registered on ``attn``
    (:meth:`BackboneSpec.on_attention_kv`); for the spec-installed attention forwards."""
    for fn in attn.__dict__.get('_vpetl_kv', ()):
        k, v = fn(k, v)
    return k, v


def apply_heads_transforms(attn: nn.Module, q: Tensor, out: Tensor) -> Tensor:
    """The per-head attention product ``(B, heads, N, d)`` through the transforms on ``attn``
    (:meth:`BackboneSpec.on_attention_heads`)."""
    for fn in attn.__dict__.get('_vpetl_heads', ()):
        out = fn(q, out)
    return out


def add_window_bias_and_mask(attn: Tensor, bias: Tensor, mask: Optional[Tensor],
                             num_heads: int) -> Tensor:
    """Window attention logits plus the relative-position ``bias`` and the shift ``mask``,
    where the keys may start with ``P`` prepended tokens (prefixes, prompts): those columns get
    no bias and are never masked.

    ``attn``: ``(num_windows * B, heads, N, P + N)``; ``bias``: ``(heads, N, N)``; ``mask``:
    ``(num_windows, N, N)`` or None. Returns ``attn``'s shape.
    """
    n, extra = attn.shape[-2], attn.shape[-1] - attn.shape[-2]
    attn = attn + F.pad(bias, (extra, 0)).unsqueeze(0)
    if mask is not None:
        nW = mask.shape[0]
        attn = attn.view(-1, nW, num_heads, n, n + extra) + F.pad(
            mask, (extra, 0)).unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, n, n + extra)
    return attn


def qkv_sites(qkv: LinearSite, dims: int) -> Dict[str, LinearSite]:
    """The ``qkv`` site and its ``q``, ``k``, ``v`` row slices.

    The slices are rows ``[0, C)``, ``[C, 2C)`` and ``[2C, 3C)`` of the fused weight.
    """
    return dict(qkv=qkv, q=qkv.slice(slice(0, dims)), k=qkv.slice(slice(dims, 2 * dims)),
                v=qkv.slice(slice(2 * dims, 3 * dims)))


def grid_from_tokens(num_tokens: int, grid: Tuple[int, ...]) -> TokenLayout:
    """Layout of ``num_tokens`` tokens whose trailing ``prod(grid)`` form ``grid``."""
    size = 1
    for g in grid:
        size *= g
    if num_tokens < size:
        raise ValueError(f'{num_tokens} tokens cannot hold a {grid} grid')
    return TokenLayout(num_tokens - size, tuple(grid))


def get_spec(backbone: nn.Module, spec: Optional[str] = None) -> BackboneSpec:
    """Build the spec for ``backbone``: the named one, or the registered one that matches."""
    import vpetl_mm.models.specs  # noqa: F401  (registers the specs)
    if spec is not None:
        return BACKBONE_SPECS.get(spec)(backbone)
    for name, cls in BACKBONE_SPECS.module_dict.items():
        if cls.matches(backbone):
            return cls(backbone)
    known = sorted(c for s in BACKBONE_SPECS.module_dict.values() for c in s.backbone_classes)
    raise TypeError(
        f'vpetl_mm has no backbone spec for {type(backbone).__module__}.'
        f'{type(backbone).__name__}. Specs exist for: {", ".join(known)}. '
        'Pass spec=<name> to PEFTBackbone, or add a spec under vpetl_mm/models/specs/.')

"""Backbone specs: where a PEFT method finds the roles it speaks of in a concrete backbone.

A method never names a backbone's modules. It asks the spec for

* the blocks, in forward order (:class:`BlockInfo`: index, stage, width, the block module and its
  ``attn`` / ``mlp`` branch modules and norms);
* a :class:`LinearSite` per linear role of a block: ``qkv`` (and its row slices ``q``, ``k``,
  ``v``), ``proj``, ``fc1``, ``fc2``. A site adds registered output deltas to the linear map and
  can fold a weight update into the frozen weight (merge);
* block input/output hooks that see the token sequence as ``(B, N, C)`` together with its
  :class:`TokenLayout` (prefix tokens such as cls, then a spatial or spatio-temporal grid).

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

    def add_delta(self, fn: Callable[[Tensor], Tensor]) -> None:
        """Add ``fn(x)`` to this site's output rows on every forward."""
        root = self.root()
        root._deltas.append((self.rows, fn))
        root._on_first_delta()

    def add_low_rank(self, term: LowRankTerm) -> LowRankTerm:
        """Add the low-rank ``term`` to this site's output rows on every forward; returns it
        (pass it to :meth:`remove_delta` to take it away)."""
        root = self.root()
        root._low_rank.append((self.rows, term))
        root._on_first_delta()
        return term

    def add_output_transform(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        """Replace the output ``y`` (all rows, deltas included) by ``fn(x, y)`` on every
        forward, ``x`` being the linear's input."""
        if self.parent is not None:
            raise ValueError('output transforms act on a whole linear, not on a row slice')
        self._transforms.append(fn)
        self._on_first_delta()

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
    backbone's class) and implement :meth:`_build_blocks` and :meth:`_layout`.
    """
    backbone_classes: Sequence[str] = ()
    #: grid rank of the tokens: 2 for images, 3 for video
    grid_rank: int = 2
    #: whether a block accepts a longer token sequence (extra tokens after the prefix) through
    #: :meth:`replace_block_input`: true for plain ViTs, false for windowed (Swin) blocks
    accepts_extra_tokens: bool = False

    def __init__(self, backbone: nn.Module):
        self.backbone = backbone
        self._input_shape: Optional[torch.Size] = None
        backbone.register_forward_pre_hook(self._remember_input)
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

    # -- to implement -----------------------------------------------------------------------
    def _build_blocks(self) -> List[BlockInfo]:
        raise NotImplementedError(f'{type(self).__name__} must list its blocks')

    def _layout(self, block: BlockInfo, tokens: Tensor, args: tuple) -> TokenLayout:
        """The layout of ``tokens`` ``(B, N, C)`` entering ``block`` called with ``args``."""
        raise NotImplementedError(f'{type(self).__name__} must describe its token layout')

    # -- block hooks ------------------------------------------------------------------------
    def _tokens_in(self, block: BlockInfo, args: tuple) -> Tensor:
        """The block input as ``(B, N, C)``; override for other layouts."""
        return args[0]

    def _tokens_out(self, block: BlockInfo, output, tokens: Tensor):
        """Put ``tokens`` ``(B, N, C)`` back into the block's output structure."""
        return tokens

    def _output_tokens(self, block: BlockInfo, output) -> Tensor:
        return output

    def on_block_input(self, block: BlockInfo, fn: Callable[[Tensor, TokenLayout], None]):
        """Call ``fn(tokens, layout)`` with every input of ``block``; returns a removable handle."""

        def hook(module, args):
            tokens = self._tokens_in(block, args)
            fn(tokens, self._layout(block, tokens, args))

        return block.module.register_forward_pre_hook(hook)

    def on_attention_kv(self, block: BlockInfo,
                        fn: Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]) -> None:
        """Pass the keys and values of ``block``'s attention, ``(B, heads, N, d)`` each, through
        ``fn(k, v) -> (k, v)`` before the attention product; ``fn`` may add key / value tokens
        (prefixes). Only specs that run the attention product themselves or can reach it."""
        raise TypeError(f'{type(self).__name__} gives no access to the attention keys and '
                        'values (windowed attention with position bias and masks)')

    def on_attention_heads(self, block: BlockInfo,
                           fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        """Pass the per-head attention result of ``block`` through ``fn(q, out) -> out`` before
        the heads are merged and projected: ``q`` the queries (unscaled) and ``out`` the
        attention product, ``(B', heads, N, d)`` each (``B'`` is ``B``, or ``windows * B`` for
        windowed attention). A branch parallel to the attention (an unbound prefix) adds to
        ``out`` here and so passes the frozen output projection. Same availability as
        :meth:`on_attention_kv`."""
        raise TypeError(f'{type(self).__name__} gives no access to the per-head attention '
                        'product (windowed attention with position bias and masks)')

    def replace_block_input(self, block: BlockInfo,
                            fn: Callable[[Tensor, TokenLayout], Tensor]):
        """Replace the token input of ``block`` by ``fn(tokens, layout)``; returns a handle.

        ``fn`` may change the number of tokens only where :attr:`accepts_extra_tokens` holds
        (then the spec's block output hook callers must restore the original count before the
        backbone's own code sees the sequence again).
        """

        def hook(module, args):
            tokens = self._tokens_in(block, args)
            new = fn(tokens, self._layout(block, tokens, args))
            return (self._tokens_out(block, args[0], new), ) + tuple(args[1:])

        return block.module.register_forward_pre_hook(hook)

    def on_attention_residual(self, block: BlockInfo,
                              fn: Callable[[Tensor, TokenLayout], Tensor]):
        """Replace the residual stream between the attention and the MLP of ``block`` (the sum
        ``h = x + attn(...)`` that feeds both ``norm2`` and the MLP's skip connection) by
        ``fn(tokens, layout)``, ``(B, N, C) -> (B, N, C)``; returns a handle.

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

        return _Handles([block.module.register_forward_pre_hook(remember),
                         block.norm2.register_forward_pre_hook(replace)])

    def on_block_output(self, block: BlockInfo,
                        fn: Callable[[Tensor, TokenLayout], Tensor]):
        """Replace the output of ``block`` by ``fn(tokens, layout)``; returns a handle."""
        layouts = {}

        def pre_hook(module, args):
            tokens = self._tokens_in(block, args)
            layouts['last'] = self._layout(block, tokens, args)

        def hook(module, args, output):
            tokens = self._output_tokens(block, output)
            new = fn(tokens, layouts.pop('last'))
            return self._tokens_out(block, output, new)

        handles = [block.module.register_forward_pre_hook(pre_hook),
                   block.module.register_forward_hook(hook)]
        return _Handles(handles)

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


class _Handles:

    def __init__(self, handles):
        self.handles = handles

    def remove(self):
        for h in self.handles:
            h.remove()


def add_kv_transform(attn: nn.Module, fn: Callable) -> None:
    """Register ``fn(k, v) -> (k, v)`` on an attention module whose forward calls
    :func:`apply_kv_transforms`."""
    if not hasattr(attn, '_vpetl_kv'):
        attn._vpetl_kv = []
    attn._vpetl_kv.append(fn)


def apply_kv_transforms(attn: nn.Module, k: Tensor, v: Tensor) -> Tuple[Tensor, Tensor]:
    """Keys and values ``(B, heads, N, d)`` through the transforms registered on ``attn``."""
    for fn in getattr(attn, '_vpetl_kv', ()):
        k, v = fn(k, v)
    return k, v


def add_heads_transform(attn: nn.Module, fn: Callable) -> None:
    """Register ``fn(q, out) -> out`` on an attention module whose forward calls
    :func:`apply_heads_transforms`."""
    if not hasattr(attn, '_vpetl_heads'):
        attn._vpetl_heads = []
    attn._vpetl_heads.append(fn)


def apply_heads_transforms(attn: nn.Module, q: Tensor, out: Tensor) -> Tensor:
    """The per-head attention product ``(B, heads, N, d)`` through the transforms on ``attn``."""
    for fn in getattr(attn, '_vpetl_heads', ()):
        out = fn(q, out)
    return out


def install_forward(module: nn.Module, forward: Callable) -> nn.Module:
    """Replace ``module.forward`` by ``forward`` bound to it, once (later calls keep it);
    the class's own forward stays reachable as ``type(module).forward``."""
    if not getattr(module, '_vpetl_wrapped', False):
        module.forward = types.MethodType(forward, module)
        module._vpetl_wrapped = True
    return module


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

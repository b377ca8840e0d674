"""``vpetl_mm.PEFTBackbone``: wrap any backbone config with a PEFT method at build time.

Usage in a config (the inner backbone resolves in the run's default scope)::

    backbone=dict(type='vpetl_mm.PEFTBackbone',
                  backbone=dict(type='VisionTransformer', arch='b', ...),
                  pretrained='pretrained/vit-b16_in21k.pth',
                  method=dict(type='LoRA', rank=8, targets=('q', 'v')))

The builder returns the inner backbone itself, with the method attached: its forward, its
outputs and its state-dict keys are those of the plain backbone, so necks, heads, segmentors,
detectors and model-zoo checkpoints work unchanged. The method's state sits at ``backbone.peft``
(a :class:`PEFTState`).
"""
import contextlib
import copy
import logging
import os
import zipfile
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.logging import MMLogger, print_log
from mmengine.registry import MODELS as ROOT_MODELS
from torch import nn

from vpetl_mm.registry import MODELS, PEFT_METHODS

from .specs.base import BackboneSpec, get_spec
from .specs.record import AttachRecord, HookAttachment, module_device


class PEFTState(nn.Module):
    """The PEFT methods attached to one backbone, kept at ``backbone.peft``.

    Methods come in named sets; one set is active (attached) at a time. A backbone built by
    :func:`PEFTBackbone` has one set, ``'default'``. More sets serve other tasks with the same
    frozen backbone (:meth:`add_set`, :meth:`use`); the state dict holds the active set only, so
    each set's trainable-only checkpoint is the one a single-set model would write.

    Attributes:
        methods (nn.ModuleDict): the methods of the active set by name (``lora``, ``dtl``, or
            ``lora_1`` when a type repeats); modules a method owns itself have keys
            ``peft.methods.<name>.*``.
        method_cfgs (list[dict]): the configs the active set was built from, stored with
            trainable-only checkpoints so they can be rebuilt.
        active (str): the name of the active set.
    """

    def __init__(self, spec: BackboneSpec, method_cfgs: List[dict]):
        super().__init__()
        self.spec = spec
        self.method_cfgs = copy.deepcopy(method_cfgs)
        self.methods = nn.ModuleDict()
        self.merged = False
        self.active = 'default'
        self._inactive: Dict[str, tuple] = {}  # set name -> (methods, cfgs), detached
        self._own: Optional[AttachRecord] = None  # the backbone hooks PEFTBackbone added
        self._merged_methods: Optional[dict] = None  # name -> method, kept to unmerge

    @property
    def mergeable(self) -> bool:
        return all(m.mergeable for m in self.methods.values())

    @property
    def set_names(self) -> List[str]:
        """Every set, the active one first."""
        return [self.active] + list(self._inactive)

    def __deepcopy__(self, memo):
        """Refused: the methods reach the backbone through hooks and forwards bound to the
        original modules, so a deep copy would run the original's method weights, not its own
        (mmengine's ``EMAHook`` deep-copies the model)."""
        raise TypeError('copy.deepcopy of a model with PEFT methods is not supported: the copy '
                        'would still run the original\'s method weights through its hooks. '
                        'Build a second model from the config and copy the weights over '
                        '(vpetl_mm.save_trainable / load_trainable)')

    def begin_forward(self) -> None:
        for method in self.methods.values():
            method.begin_forward()

    # -- building ---------------------------------------------------------------------------
    def _build(self, cfgs: List[dict], methods: nn.ModuleDict) -> None:
        """Build the methods of ``cfgs`` into ``methods`` and attach them, in order."""
        for cfg in cfgs:
            name = _method_name(cfg, methods)
            method = build_method(cfg)
            methods[name] = method
            method.attach_to(self.spec.backbone, self.spec, name)

    def _check_live(self, action: str) -> None:
        if self.merged:
            raise RuntimeError(f'cannot {action}: the methods were merged into the weights')

    def _check_names(self, names) -> List[str]:
        unknown = [n for n in names if n not in self.methods]
        if unknown:
            raise KeyError(f'no PEFT method {unknown} in the active set {self.active!r}; it has '
                           f'{list(self.methods)}')
        return list(names) or list(self.methods)

    # -- disable / enable -------------------------------------------------------------------
    def disable(self, *names: str) -> None:
        """Stop the methods ``names`` (default: all of the active set) from acting: the backbone
        computes what the plain one does, except for the other methods. Their modules stay (the
        state dict keeps its keys); backbone tensors a method trains in place show their
        original values until :meth:`enable` (a checkpoint saved meanwhile holds those)."""
        self._check_live('disable')
        off = set(self._check_names(names))
        self._reapply(lambda name: name not in off and self.methods[name].record.enabled)

    def enable(self, *names: str) -> None:
        """Let the methods ``names`` (default: all) act again."""
        self._check_live('enable')
        on = set(self._check_names(names))
        self._reapply(lambda name: name in on or self.methods[name].record.enabled)

    def _reapply(self, keep_on) -> None:
        """Take the behaviour of every method off and put it back on for those ``keep_on``
        selects, in attach order (so composed methods act in their order)."""
        wanted = {name: keep_on(name) for name in self.methods}
        with self._own_hooks_last():
            for method in reversed(list(self.methods.values())):
                method.record.disable()
            for name, method in self.methods.items():
                if wanted[name]:
                    method.record.enable()

    @contextlib.contextmanager
    def _own_hooks_last(self):
        """Re-register the backbone hooks of :func:`PEFTBackbone` after the methods' (its
        forward hook must run after theirs: it resets their per-forward state)."""
        if self._own is not None:
            self._own.disable()
        yield
        if self._own is not None:
            self._own.enable()

    @contextlib.contextmanager
    def disabled(self, *names: str):
        """``with backbone.peft.disabled(): ...`` runs the plain backbone (or without ``names``),
        and restores the methods that were enabled on the way out."""
        before = {n for n, m in self.methods.items() if m.record.enabled}
        self.disable(*names)
        try:
            yield self
        finally:
            self._reapply(lambda name: name in before)

    # -- detach -----------------------------------------------------------------------------
    def detach(self, *names: str) -> None:
        """Take the methods ``names`` off for good and drop them (their trained values too).

        With no names every set goes: the hooks, modules and forwards of vpetl_mm leave the
        backbone, ``backbone.peft`` included, and tuned backbone tensors get their original
        values back, so outputs and state dict are the plain backbone's. The backbone stays
        frozen.
        """
        self._check_live('detach')
        if names:
            self.method_cfgs = [c for c, n in zip(self.method_cfgs, self.methods)
                                if n not in names]  # built in the order of their configs
            for name in self._check_names(names):
                self.methods[name].record.detach()
                self.methods[name].record.forget()
                del self.methods[name]
            return
        for method in reversed(list(self.methods.values())):
            method.record.detach()
            method.record.forget()
        for methods, _ in self._inactive.values():
            for method in methods.values():
                method.record.forget()
        self.methods, self._inactive, self.method_cfgs = nn.ModuleDict(), {}, []
        backbone = self.spec.backbone
        if self._own is not None:
            self._own.detach()
        self.spec.release()
        if backbone._modules.get('peft') is self:
            del backbone._modules['peft']

    # -- sets -------------------------------------------------------------------------------
    def add_set(self, name: str, method: Union[dict, Sequence[dict]]) -> None:
        """Build the methods of ``method`` as the set ``name``, attached to the same frozen
        backbone but left inactive (:meth:`use` switches to it). Each set owns its modules and
        the backbone tensors it tunes in place (their values are swapped on :meth:`use`)."""
        self._check_live('add a set')
        if name in self.set_names:
            raise ValueError(f'a PEFT method set named {name!r} exists: {self.set_names}')
        cfgs = [dict(c) for c in _method_cfgs(method)]
        self._take_off(self.methods)
        methods = nn.ModuleDict()
        try:
            self._build(cfgs, methods)
        finally:
            self._take_off(methods)
            self._put_on(self.methods)
        self._inactive[name] = (methods, copy.deepcopy(cfgs))

    def use(self, name: str) -> None:
        """Make the set ``name`` the active one (the others stay built, detached)."""
        self._check_live('switch sets')
        if name == self.active:
            return
        if name not in self._inactive:
            raise KeyError(f'no PEFT method set {name!r}; sets: {self.set_names}')
        methods, cfgs = self._inactive.pop(name)
        self._take_off(self.methods)
        self._inactive[self.active] = (self.methods, self.method_cfgs)
        device = module_device(self.spec.backbone)
        self.methods, self.method_cfgs, self.active = methods.to(device), cfgs, name
        self._put_on(self.methods)

    @staticmethod
    def _take_off(methods: nn.ModuleDict) -> None:
        for method in reversed(list(methods.values())):
            method.record.detach()

    def _put_on(self, methods: nn.ModuleDict) -> None:
        with self._own_hooks_last():
            for method in methods.values():
                method.record.reattach()

    # -- merge ------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> None:
        """Fold every method of the active set into the frozen weights; the backbone becomes a
        plain one (other sets are dropped)."""
        if self.merged:
            return
        blocking = [n for n, m in self.methods.items() if not m.mergeable]
        if blocking:
            raise TypeError(f'cannot merge: method(s) {blocking} are not mergeable')
        for method in self.methods.values():
            if not method.record.enabled:
                raise RuntimeError(f'cannot merge the disabled method {method.record.name}: '
                                   'enable it or detach it first')
        for method in self.methods.values():
            method.merge()
        self._merged_methods = dict(self.methods.items()) if self.unmergeable else None
        self.methods = nn.ModuleDict()
        self._inactive = {}
        self.merged = True

    @property
    def unmergeable(self) -> bool:
        methods = self._merged_methods if self.merged else self.methods
        return methods is not None and all(m.unmergeable for m in methods.values())

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge` where every method's fold is an addition (LoRA, FacT,
        KAdaptation): subtract the folds and put the methods back (outputs equal up to float
        rounding)."""
        if not self.merged:
            raise RuntimeError('nothing to unmerge: the methods were not merged')
        if not self.unmergeable:
            raise TypeError('cannot unmerge: the merge dropped methods whose fold cannot be '
                            'subtracted again (only LoRA, FacT and KAdaptation can)')
        methods = nn.ModuleDict(self._merged_methods)
        with self._own_hooks_last():
            for method in methods.values():
                method.unmerge()
        self.methods, self._merged_methods, self.merged = methods, None, False


def _method_name(cfg: dict, taken) -> str:
    base = str(cfg['type']).lower().replace('+', 'plus')
    name, i = base, 1
    while name in taken:
        name, i = f'{base}_{i}', i + 1
    return name


def _method_cfgs(method) -> list:
    """``method=`` as a list of configs (``None``: none)."""
    return [] if method is None else [method] if isinstance(method, dict) else list(method)


def _init_cfg_loads(model: nn.Module) -> bool:
    """Whether ``model``'s ``init_cfg`` (mmengine's) loads a checkpoint."""
    init_cfg = getattr(model, 'init_cfg', None)
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(isinstance(c, dict) and c.get('type') == 'Pretrained' for c in cfgs)


def _holds_npy(path: str) -> bool:
    """Whether the zip archive at ``path`` is a NumPy ``.npz`` (only ``.npy`` members)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return False
    return bool(names) and all(n.endswith('.npy') for n in names)


def read_checkpoint(path: str, key: str = 'checkpoint'):
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that name ``key`` (the
    argument or config key that gave ``path``), the file and the likely fix.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a NumPy ``.npz`` archive (a JAX / big_vision release that needs converting)
            or a file torch cannot read (truncated, not a torch checkpoint).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{key}={path!r}: no such file (resolved to '
                                f'{os.path.abspath(path)})')
    npz = (f'{key}={path!r} is a NumPy archive (a JAX / big_vision release), not a torch '
           'checkpoint: convert it first, e.g. python '
           f'tools/model_converters/vit2mmpretrain.py {path} OUT.pth')
    if path.endswith('.npz'):
        raise ValueError(npz)
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        with open(path, 'rb') as f:
            is_zip = f.read(4).startswith(b'PK')
        if is_zip and _holds_npy(path):  # an .npz under another name
            raise ValueError(npz) from err
        hint = ('a zip archive torch cannot read: truncated or not a torch checkpoint'
                if is_zip else 'not a torch checkpoint, or truncated')
        raise ValueError(f'{key}={path!r} ({os.path.getsize(path):,} bytes) cannot be read: '
                         f'{hint} ({type(err).__name__}: {str(err).splitlines()[0][:200]})'
                         ) from err


def load_pretrained(backbone: nn.Module, spec: BackboneSpec, path: str,
                    prefix: Optional[str] = None, strict: bool = True) -> None:
    """Load a local checkpoint into ``backbone`` (``weights_only=True``).

    Accepts ``{'state_dict': sd}``, ``{'model': sd}`` or a flat ``sd``. With ``prefix`` (e.g.
    ``'backbone.'``) only keys under it are used, with the prefix removed. Keys the backbone lacks
    (a classifier head, ...) are ignored and logged. Backbone weights missing from the checkpoint
    raise a ``KeyError`` naming them unless ``strict=False``: a frozen backbone left at random
    initialisation is a silent wrong result.
    """
    logger = MMLogger.get_current_instance()
    ckpt = read_checkpoint(path, 'pretrained')
    if isinstance(ckpt, dict) and 'state_dict' in ckpt:
        ckpt = ckpt['state_dict']
    elif isinstance(ckpt, dict) and 'model' in ckpt:
        ckpt = ckpt['model']
    if prefix:
        ckpt = {k[len(prefix):]: v for k, v in ckpt.items() if k.startswith(prefix)}
        if not ckpt:
            raise KeyError(f'pretrained={path!r}: no key starts with prefix={prefix!r}')
    ckpt = spec.adapt_state_dict(dict(ckpt))
    own = backbone.state_dict()
    unexpected = [k for k in ckpt if k not in own]
    for k in unexpected:
        ckpt.pop(k)
    result = backbone.load_state_dict(ckpt, strict=False)
    missing = list(result.missing_keys)
    if unexpected:
        print_log(f'pretrained {path}: ignored {len(unexpected)} keys the backbone does not have: '
                  f'{unexpected[:8]}{" ..." if len(unexpected) > 8 else ""}', logger=logger)
    if missing:
        message = (f'pretrained={path!r} lacks {len(missing)} backbone weights, e.g. '
                   f'{missing[:8]}. Convert the checkpoint (tools/model_converters/) or set '
                   "pretrained_prefix=... (e.g. 'backbone.' for a whole-model checkpoint); "
                   'pass strict_pretrained=False to accept random weights there.')
        if strict:
            raise KeyError(message)
        print_log(message, logger=logger, level=30)
    print_log(f'loaded pretrained backbone weights from {path}', logger=logger)


def build_method(cfg: dict):
    """Build a PEFT method from its config; unknown types name the registered ones."""
    args = copy.deepcopy(dict(cfg))
    if 'type' not in args:
        raise KeyError(f'PEFTBackbone method={dict(cfg)} has no type; set '
                       "method=dict(type='LoRA', ...) (registered: "
                       f'{sorted(PEFT_METHODS.module_dict)})')
    method_type = args.pop('type')
    cls = PEFT_METHODS.get(method_type) if isinstance(method_type, str) else method_type
    if cls is None:
        raise KeyError(f'method type={method_type!r} is not a registered PEFT method; known: '
                       f'{sorted(PEFT_METHODS.module_dict)}')
    try:
        return cls(**args)
    except TypeError as e:
        raise TypeError(f'method={dict(cfg)}: {e}') from e


def _build_inner(cfg: dict) -> nn.Module:
    """Build the inner backbone in the current default scope (mmpretrain, mmseg, ...)."""
    if isinstance(cfg, nn.Module):
        return cfg
    return ROOT_MODELS.build(cfg)


def PEFTBackbone(backbone: Union[dict, nn.Module],
                 method: Union[dict, Sequence[dict], None] = None,
                 pretrained: Optional[str] = None,
                 pretrained_prefix: Optional[str] = None,
                 strict_pretrained: bool = True,
                 spec: Optional[str] = None) -> nn.Module:
    """Build ``backbone``, load ``pretrained``, freeze it and attach ``method``.

    Args:
        backbone (dict | nn.Module): the inner backbone config, resolved in the run's default
            scope (``type='VisionTransformer'`` under ``default_scope='mmpretrain'``), or a module.
            A config is initialised (its ``init_weights()``) only when no ``pretrained`` is
            given; a module is used with its weights as they are (never re-initialised), so a
            backbone the caller loaded keeps what it loaded.
        method (dict | list[dict] | None): the PEFT method config(s) from
            ``vpetl_mm.registry.PEFT_METHODS``; a list composes methods. ``None`` freezes only
            (same as ``LinearProbe``).
        pretrained (str, optional): local checkpoint with the backbone weights, loaded here so
            that test runs and trainable-only checkpoints find the frozen base in place.
        pretrained_prefix (str, optional): key prefix to strip, e.g. ``'backbone.'`` for a
            whole-classifier checkpoint.
        strict_pretrained (bool): raise when backbone weights are missing from ``pretrained``.
        spec (str, optional): name of a registered backbone spec; chosen from the backbone's
            class when ``None``.

    Returns:
        nn.Module: the inner backbone with the method attached and ``.peft`` set.
    """
    handed = isinstance(backbone, nn.Module)
    model = _build_inner(backbone)
    if hasattr(model, 'peft'):
        raise ValueError(f'{type(model).__name__} already carries a PEFT method; pass a list '
                         'to method=... to compose several')
    logger = MMLogger.get_current_instance()
    name = type(model).__name__
    on_meta = any(p.is_meta for p in model.parameters())  # shape-only builds (counting)
    if handed:
        # a module the caller built (and maybe loaded): its weights are never touched here
        print_log(f'PEFTBackbone: wrapping the given {name} with its weights as they are'
                  f'{"; loading " + pretrained + " into it" if pretrained else ""}', logger=logger)
    elif pretrained:
        # every weight is overwritten next, so the (verbose) random init is skipped
        print_log(f'PEFTBackbone: built {name} from its config; weights from {pretrained}',
                  logger=logger)
    elif hasattr(model, 'init_weights') and not on_meta:
        # the backbone's own init (its init_cfg may load weights)
        print_log(f'PEFTBackbone: built {name} from its config and ran its init_weights() '
                  '(no pretrained=...: the frozen weights are what that init gives)',
                  logger=logger)
        model.init_weights()
        types = [str(c.get('type')) for c in _method_cfgs(method) if isinstance(c, dict)]
        from_scratch = bool(types) and all(t == 'FullFineTune' for t in types)
        if not _init_cfg_loads(model) and not from_scratch:
            print_log(f'PEFTBackbone: no pretrained=... and the init_cfg of {name} loads no '
                      'checkpoint: the frozen backbone keeps RANDOM weights. Set '
                      'pretrained=PATH (fine to ignore in tests and from-scratch runs).',
                      logger=logger, level=logging.WARNING)
    the_spec = get_spec(model, spec)
    if pretrained:
        load_pretrained(model, the_spec, pretrained, pretrained_prefix, strict_pretrained)
    for param in model.parameters():
        param.requires_grad_(False)

    cfgs = [dict(c) for c in _method_cfgs(method)]
    state = PEFTState(the_spec, cfgs)
    state._build(cfgs, state.methods)
    model.add_module('peft', state)
    state._own = AttachRecord('PEFTBackbone')
    state._own.keep(
        HookAttachment(lambda: model.register_forward_pre_hook(
            lambda module, args: state.begin_forward())),
        HookAttachment(lambda: model.register_forward_hook(
            lambda module, args, out: state.begin_forward())))
    # Weights are final now: a later init_weights() of the enclosing model (Runner.train calls
    # it) must not re-initialise the pretrained backbone or zero-initialised method weights.
    for module in model.modules():
        if hasattr(module, '_is_init'):
            module._is_init = True
    return model


MODELS.register_module(name='PEFTBackbone', module=PEFTBackbone)


def get_peft_state(model: nn.Module) -> List[PEFTState]:
    """Every :class:`PEFTState` inside ``model`` (one per PEFT backbone)."""
    return [m for m in model.modules() if isinstance(m, PEFTState)]

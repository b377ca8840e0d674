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
import copy
import logging
import os
import zipfile
from typing import List, Optional, Sequence, Union

import torch
from mmengine.logging import MMLogger, print_log
from mmengine.registry import MODELS as ROOT_MODELS
from torch import nn

from vpetl_mm.registry import MODELS, PEFT_METHODS

from .specs.base import BackboneSpec, get_spec


class PEFTState(nn.Module):
    """The PEFT methods attached to one backbone, kept at ``backbone.peft``.

    Attributes:
        methods (nn.ModuleDict): the methods by name (``lora``, ``dtl``, or ``lora_1`` when a
            type repeats); modules a method owns itself have keys ``peft.<name>.*``.
        method_cfgs (list[dict]): the configs the methods were built from, stored with
            trainable-only checkpoints so they can be rebuilt.
    """

    def __init__(self, spec: BackboneSpec, method_cfgs: List[dict]):
        super().__init__()
        self.spec = spec
        self.method_cfgs = copy.deepcopy(method_cfgs)
        self.methods = nn.ModuleDict()
        self.merged = False

    @property
    def mergeable(self) -> bool:
        return all(m.mergeable for m in self.methods.values())

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

    @torch.no_grad()
    def merge(self) -> None:
        """Fold every method into the frozen weights; the backbone becomes a plain one."""
        if self.merged:
            return
        blocking = [n for n, m in self.methods.items() if not m.mergeable]
        if blocking:
            raise TypeError(f'cannot merge: method(s) {blocking} are not mergeable')
        for method in self.methods.values():
            method.merge()
        self.methods = nn.ModuleDict()
        self.merged = True


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

    cfgs = _method_cfgs(method)
    state = PEFTState(the_spec, [dict(c) for c in cfgs])
    for cfg in cfgs:
        name = _method_name(cfg, state.methods)
        peft_method = build_method(cfg)
        state.methods[name] = peft_method
        peft_method.attach(model, the_spec)
    model.add_module('peft', state)
    model.register_forward_pre_hook(lambda module, args: state.begin_forward())
    model.register_forward_hook(lambda module, args, out: state.begin_forward())
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

"""Export a trained PEFT model as an ordinary checkpoint and config of the unmodified toolbox.

    python tools/model_converters/merge_peft.py CONFIG CHECKPOINT OUT [--cfg-options ...]

Builds the model from CONFIG (the frozen base comes from its ``pretrained``), loads CHECKPOINT
(trainable-only checkpoints are fine), merges every PEFT method into the frozen weights and writes
``{'state_dict': ..., 'meta': ...}`` with the keys of the plain model to OUT, keeping the
checkpoint's ``meta['dataset_meta']`` (class names, palette) for the toolbox's inferencers. Beside
it, OUT with the suffix ``.py`` receives the plain config: CONFIG (with the options) with every
``vpetl_mm.PEFTBackbone`` replaced by its inner backbone and the plugin's import and hooks
removed. The toolbox's inferencers run the pair without vpetl_mm (``DetInferencer``,
``MMSegInferencer``, ``ImageClassificationInferencer`` given the config and the weights).
Fails with a clear error, writing nothing, when a method cannot be merged. Both files are
written atomically.
"""
import argparse
import copy
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

PLUGIN = 'vpetl_mm'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='merged checkpoint; the plain config goes to OUT.py')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    return parser.parse_args(argv)


def plain_backbone_config(backbone_cfg):
    """The inner backbone config of a ``vpetl_mm.PEFTBackbone`` config (recursively)."""
    while isinstance(backbone_cfg, dict) and str(backbone_cfg.get('type', '')).endswith(
            'PEFTBackbone'):
        backbone_cfg = backbone_cfg['backbone']
    return backbone_cfg


def _unwrap_all(obj):
    """``obj`` (a model config as plain dicts and lists) with every ``PEFTBackbone`` config,
    wherever it sits (``backbone``, a teacher's backbone, ...), replaced by its inner one."""
    obj = plain_backbone_config(obj)
    if isinstance(obj, dict):
        return {k: _unwrap_all(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap_all(v) for v in obj)
    return obj


def _plugin_types(obj, path=''):
    """``'path: type'`` for every config dict under ``obj`` whose type is a vpetl_mm one."""
    found = []
    if isinstance(obj, dict):
        kind = obj.get('type')
        if isinstance(kind, str) and kind.startswith(PLUGIN + '.'):
            found.append(f'{path}: {kind}')
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return found
    for key, value in items:
        found += _plugin_types(value, f'{path}.{key}' if path else str(key))
    return found


def plain_config(cfg: Config) -> Config:
    """The config of the plain toolbox model that a merged checkpoint of ``cfg`` loads into.

    Every ``vpetl_mm.PEFTBackbone`` in ``cfg.model`` becomes its inner backbone (the merged
    state dict has exactly that model's keys); ``vpetl_mm`` leaves ``custom_imports`` and the
    plugin's hooks leave ``custom_hooks``, so loading the config imports nothing of the plugin.
    Other parts that name plugin types (a dataset such as ``vpetl_mm.VTAB1k``) are kept: the
    toolbox's inferencers never build them; :func:`_plugin_types` lists them.
    """
    plain = copy.deepcopy(cfg)
    plain.model = _unwrap_all(plain.model.to_dict())
    imports = plain.get('custom_imports', {}).get('imports', [])
    imports = [m for m in ([imports] if isinstance(imports, str) else imports)
               if m != PLUGIN and not m.startswith(PLUGIN + '.')]
    if imports:
        plain.custom_imports.imports = imports
    else:
        plain.pop('custom_imports', None)
    hooks = [h for h in plain.get('custom_hooks', [])
             if not str(h.get('type', '')).startswith(PLUGIN + '.')]
    if hooks:
        plain.custom_hooks = hooks
    else:
        plain.pop('custom_hooks', None)
    return plain


def config_path(out: str) -> str:
    """Where the plain config of the checkpoint ``out`` goes: ``merged.pth`` -> ``merged.py``."""
    return osp.splitext(out)[0] + '.py'


def main(argv=None):
    args = parse_args(argv)
    import vpetl_mm
    from mmengine.registry import MODELS
    from vpetl_mm.compat.fileio import atomic_write_bytes
    from vpetl_mm.models.peft_backbone import read_checkpoint

    if args.out.endswith('.py'):
        sys.exit(f'merge_peft: error: OUT={args.out!r} is the checkpoint; its config goes to '
                 'OUT with the suffix .py')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    try:
        vpetl_mm.load_trainable(model, args.checkpoint)
        meta = dict(merged_from=osp.basename(args.checkpoint), config=osp.basename(args.config))
        dataset_meta = read_checkpoint(args.checkpoint).get('meta', {}).get('dataset_meta')
        if dataset_meta is not None:
            meta['dataset_meta'] = dataset_meta
        vpetl_mm.save_merged(model, args.out, meta=meta)
    except (FileNotFoundError, KeyError, TypeError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        sys.exit(f'merge_peft: error: {message}')
    plain = plain_config(cfg)
    atomic_write_bytes(plain.pretty_text.encode(), config_path(args.out))
    print(f'merged {args.checkpoint} -> {args.out} ({len(model.state_dict())} tensors); '
          f'plain config -> {config_path(args.out)}')
    leftover = _plugin_types(plain.to_dict())
    if leftover:
        print(f'the plain model needs no vpetl_mm; these parts of the config still name its '
              f'types (inferencers do not build them): {leftover}')
    return args.out


if __name__ == '__main__':
    main()

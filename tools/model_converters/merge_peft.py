"""Export a trained PEFT model as an ordinary checkpoint of the unmodified toolbox.

    python tools/model_converters/merge_peft.py CONFIG CHECKPOINT OUT [--cfg-options ...]

Builds the model from CONFIG (the frozen base comes from its ``pretrained``), loads CHECKPOINT
(trainable-only checkpoints are fine), merges every PEFT method into the frozen weights and writes
``{'state_dict': ..., 'meta': ...}`` with the keys of the plain model: the toolbox loads it
without vpetl_mm (for instance with the config's backbone unwrapped from ``PEFTBackbone``).
Fails with a clear error when a method cannot be merged. The file is written atomically.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    return parser.parse_args(argv)


def plain_backbone_config(backbone_cfg):
    """The inner backbone config of a ``vpetl_mm.PEFTBackbone`` config (recursively)."""
    while isinstance(backbone_cfg, dict) and str(backbone_cfg.get('type', '')).endswith(
            'PEFTBackbone'):
        backbone_cfg = backbone_cfg['backbone']
    return backbone_cfg


def main(argv=None):
    args = parse_args(argv)
    import vpetl_mm
    from mmengine.registry import MODELS

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    try:
        vpetl_mm.load_trainable(model, args.checkpoint)
        vpetl_mm.save_merged(model, args.out,
                             meta=dict(merged_from=osp.basename(args.checkpoint),
                                       config=osp.basename(args.config)))
    except (FileNotFoundError, KeyError, TypeError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        sys.exit(f'merge_peft: error: {message}')
    merged = model.state_dict()
    print(f'merged {args.checkpoint} -> {args.out} ({len(merged)} tensors)')
    return args.out


if __name__ == '__main__':
    main()

"""Test a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [options]``.

``CHECKPOINT`` may hold only the trainable weights (what ``TrainableCheckpointHook`` saves): the
frozen backbone is loaded from the config's ``pretrained`` when the model is built.
"""
import argparse
import os
import os.path as osp
import pickle
import sys

import mmengine
import torch
from mmengine.config import DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
from tools.train import settle_dataloaders, use_cpu_distributed  # noqa: E402
from vpetl_mm.compat import read_config  # noqa: E402
from vpetl_mm.compat.atomic_file import atomic_write_bytes  # noqa: E402
from vpetl_mm.engine.data_paths import check_dataset_paths  # noqa: E402
from vpetl_mm.engine.runtime import complete_peft_runtime  # noqa: E402


METRIC_SUFFIXES = ('.json', '.yaml', '.yml')
PICKLE_SUFFIXES = ('.pkl', '.pickle')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a (PEFT) model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--out', help='write the results to this file: the metrics for .json '
                        '/ .yaml / .yml, the per-sample predictions for .pkl / .pickle '
                        '(--out-item changes what a .pkl holds)')
    parser.add_argument('--out-item', choices=['metrics', 'pred'],
                        help='what --out holds (default: metrics for .json / .yaml, pred for '
                        '.pkl); predictions are written as pickle only')
    parser.add_argument('--no-merge', action='store_true',
                        help='test the unmerged model (mergeable methods are merged by default)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.out:
        suffix = osp.splitext(args.out)[1].lower()
        if suffix not in METRIC_SUFFIXES + PICKLE_SUFFIXES:
            parser.error(f'--out {args.out}: unknown suffix {suffix!r}; use one of '
                         f'{", ".join(METRIC_SUFFIXES + PICKLE_SUFFIXES)}')
        if args.out_item is None:
            args.out_item = 'pred' if suffix in PICKLE_SUFFIXES else 'metrics'
        if args.out_item == 'pred' and suffix not in PICKLE_SUFFIXES:
            parser.error(f'--out {args.out} --out-item pred: predictions are written as pickle '
                         '(.pkl); use a .json / .yaml file for the metrics')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    hooks = [h for h in cfg.get('custom_hooks', []) if 'MergeBeforeTestHook' not in h['type']]
    hooks.append(dict(type='vpetl_mm.MergeBeforeTestHook', enable=not args.no_merge))
    cfg.custom_hooks = hooks
    if args.out and args.out_item == 'pred':
        cfg.test_evaluator = list(cfg.test_evaluator) if isinstance(
            cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=args.out))
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    for line in complete_peft_runtime(cfg):
        print(f'vpetl_mm: the model holds a PEFTBackbone; added {line}', flush=True)
    settle_dataloaders(cfg)
    if args.launcher != 'none' and not torch.cuda.is_available():
        use_cpu_distributed(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(read_config(args.config), args)
    check_dataset_paths(cfg, loaders=('test_dataloader', ))
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    metrics = runner.test()
    if args.out and args.out_item == 'metrics' and runner.rank == 0:
        dump_metrics(metrics, args.out)
        runner.logger.info(f'metrics written to {args.out}')
    return metrics


def dump_metrics(metrics, path):
    """Write ``metrics`` (name -> value) to ``path`` (json / yaml / pickle by suffix),
    atomically."""
    plain = dict(metrics)
    suffix = osp.splitext(path)[1].lower()
    if suffix in PICKLE_SUFFIXES:
        data = pickle.dumps(plain)
    else:
        data = mmengine.dump(plain, file_format='json' if suffix == '.json' else 'yaml')
        data = data.encode('utf-8')
    atomic_write_bytes(data, path)


if __name__ == '__main__':
    main()

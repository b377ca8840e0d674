"""Train a model from a config: ``python tools/train.py CONFIG [options]``.

The options are those of mmpretrain's ``tools/train.py``. On a machine without CUDA, distributed
runs (``--launcher pytorch``, used by ``tools/dist_train.sh``) use the gloo backend and a DDP
wrapper that accepts CPU modules.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

import torch
from mmengine.config import ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
from vpetl_mm.compat import read_config  # noqa: E402
from vpetl_mm.engine.data_paths import check_dataset_paths  # noqa: E402
from vpetl_mm.engine.runtime import complete_peft_runtime  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a (PEFT) model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, without a value, from the latest '
        'checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic mixed precision training: mmengine\'s '
                        'AmpOptimWrapper on a GPU, bfloat16 autocast on the CPU')
    parser.add_argument('--compile', nargs='?', const='inductor', metavar='BACKEND',
                        help='run the model\'s forward through torch.compile with BACKEND '
                        '(default inductor; aot_eager needs no C++ compiler)')
    parser.add_argument('--tensorboard', action='store_true',
                        help='also log scalars to TensorBoard (work_dir/<timestamp>/vis_data); '
                        'needs the tensorboard package')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual / base batch size')
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='disable pin_memory in the dataloaders')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='disable persistent_workers in the dataloaders')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs, e.g. '
        'optim_wrapper.optimizer.lr=0.01 train_dataloader.batch_size=32')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def use_cpu_distributed(cfg):
    """Without CUDA, run distributed jobs on gloo with a CPU-capable DDP wrapper.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, so for the
    ``pytorch`` launcher the gloo process group is created here; the runner then finds it.
    """
    import torch.distributed as dist
    if cfg.launcher == 'pytorch' and not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or ConfigDict()
    if wrapper.get('type', 'MMDistributedDataParallel') == 'MMDistributedDataParallel':
        wrapper['type'] = 'vpetl_mm.CPUCompatibleDDP'
    if 'find_unused_parameters' in cfg and 'find_unused_parameters' not in wrapper:
        wrapper['find_unused_parameters'] = cfg.find_unused_parameters
    cfg.model_wrapper_cfg = wrapper


def merge_args(cfg, args):
    """Apply the command-line options to ``cfg``."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:  # mmengine's AmpOptimWrapper needs CUDA; bf16 needs no loss scale
            cfg.optim_wrapper.type = 'vpetl_mm.AutocastOptimWrapper'
            cfg.optim_wrapper.pop('loss_scale', None)
            cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
            print('vpetl_mm: --amp without a GPU: bfloat16 autocast on the CPU '
                  '(vpetl_mm.AutocastOptimWrapper)', flush=True)
    if args.tensorboard:
        add_tensorboard(cfg)
    if args.compile:  # the forward, in place (mmengine's `compile` also traces the optimizer)
        cfg.setdefault('custom_hooks', [])
        cfg.custom_hooks.append(dict(type='vpetl_mm.CompileHook', backend=args.compile))
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    for line in complete_peft_runtime(cfg):
        print(f'vpetl_mm: the model holds a PEFTBackbone; added {line}', flush=True)
    settle_dataloaders(cfg, no_pin_memory=args.no_pin_memory,
                       no_persistent_workers=args.no_persistent_workers)
    if args.launcher != 'none' and not torch.cuda.is_available():
        use_cpu_distributed(cfg)
    return cfg


def add_tensorboard(cfg):
    """Add mmengine's ``TensorboardVisBackend`` to the config's visualizer (once)."""
    if importlib.util.find_spec('tensorboard') is None:
        raise SystemExit('tools/train.py: error: --tensorboard needs the tensorboard package '
                         '(pip install tensorboard)')
    cfg.setdefault('visualizer', ConfigDict(type='Visualizer'))
    backends = cfg.visualizer.setdefault('vis_backends', [dict(type='LocalVisBackend')])
    if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))


def settle_dataloaders(cfg, no_pin_memory=False, no_persistent_workers=False):
    """Complete every dataloader config after the command-line options were applied.

    Values the config sets win; the defaults are ``pin_memory`` with CUDA and
    ``persistent_workers``, and under ``default_scope='mmpretrain'`` ``default_collate`` (as
    mmpretrain's own tools set it; MMAction2, MMSegmentation and MMDetection rely on mmengine's
    ``pseudo_collate`` and pad in their data preprocessors, so they keep it).
    ``persistent_workers`` is turned off where ``num_workers`` is 0 (PyTorch refuses the
    combination).
    """
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field, None)
        if loader is None:
            continue
        settled = ConfigDict(pin_memory=torch.cuda.is_available(), persistent_workers=True)
        if cfg.get('default_scope', None) == 'mmpretrain':
            settled.collate_fn = dict(type='default_collate')
        settled.update(loader)
        if no_pin_memory:
            settled.pin_memory = False
        if no_persistent_workers or settled.get('num_workers', 0) == 0:
            settled.persistent_workers = False
        cfg[field] = settled


def main(argv=None):
    """Train as ``python tools/train.py *argv`` does; the runner, for callers in Python."""
    args = parse_args(argv)
    cfg = merge_args(read_config(args.config), args)
    check_dataset_paths(cfg, loaders=('train_dataloader', 'val_dataloader'))
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    return runner


if __name__ == '__main__':
    main()

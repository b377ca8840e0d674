"""The digits demo: does a PEFT method really adapt a frozen backbone?

    python tools/demo/digits_demo.py [--methods linear lora ...] [--epochs N] [--verbose]

1. Exports scikit-learn's bundled handwritten digits to two VTAB-1K folders (no download):
   ``source`` = digits 0-4; ``target`` = digits 5-9, colour-inverted and rotated by 90 degrees.
2. Pre-trains a 4-block ViT from scratch on the source task (``configs/demo/
   vit-tiny_scratch_digits-source.py``) and keeps its backbone as the "pretrained" checkpoint.
3. Adapts that backbone to the target task with each method (``configs/demo/
   vit-tiny_{method}_digits.py``) through the ordinary mmengine Runner, the same path as
   ``tools/train.py`` / ``tools/test.py``, and prints held-out top-1 and trainable parameters.

Steps 1 and 2 are skipped when their outputs exist (``--fresh`` redoes them).
"""
import argparse
import io
import logging
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from vpetl_mm.compat.fileio import atomic_write_bytes  # noqa: E402
from vpetl_mm.datasets.digits import export_digits_vtab  # noqa: E402

DEFAULT_METHODS = ('linear', 'lora', 'adapter', 'dtl', 'adaptformer', 'bitfit', 'lntune', 'ssf',
                   'repadapter', 'hydra', 'fact-tt', 'fact-tk', 'adapter-plus', 'arc', 'arc-att',
                   'houlsby', 'compacter', 'kadaptation', 'sct', 'gps', 'vpt-shallow', 'vpt-deep',
                   'mona', 'lorand', 'patt', 'bapat', 'noah', 'dyt', 'dyt-moe', 'lst', 'hst', 'snf',
                   'res-tuning', 'res-tuning-bypass', 'last', 'prefix', 'partial-1', 'full')
CONFIG = osp.join(ROOT, 'configs', 'demo', 'vit-tiny_{}_digits.py')
SOURCE_CONFIG = osp.join(ROOT, 'configs', 'demo', 'vit-tiny_scratch_digits-source.py')


def say(msg):
    print(f'[digits-demo] {msg}', flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS),
                        help='method names: configs/demo/vit-tiny_<name>_digits.py')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'digits_demo'))
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'digits_vtab'))
    parser.add_argument('--epochs', type=int, help='override the adaptation epochs')
    parser.add_argument('--source-epochs', type=int, help='override the source pre-training epochs')
    parser.add_argument('--fresh', action='store_true',
                        help='re-export the data and re-train the source backbone')
    parser.add_argument('--verbose', action='store_true', help='show the runner logs')
    return parser.parse_args(argv)


def export_data(data_root, fresh):
    marker = osp.join(data_root, 'target', 'test.txt')
    if osp.exists(marker) and not fresh:
        return
    src = export_digits_vtab(osp.join(data_root, 'source'), classes=range(5), shift='none',
                             train_fraction=0.9)
    tgt = export_digits_vtab(osp.join(data_root, 'target'), classes=range(5, 10),
                             shift='invert_rotate', train_fraction=0.7)
    say(f'exported digits: source (0-4) train {src["train800val200"]} / test {src["test"]}, '
        f'target (5-9, inverted + rotated) train {tgt["train800val200"]} / test {tgt["test"]}')


def run(config, work_dir, data_root, pretrained=None, epochs=None, verbose=False):
    """Train then test one config; return (top-1, trainable backbone parameters, runner)."""
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.log_level = 'INFO' if verbose else 'WARNING'
    for loader in ('train_dataloader', 'test_dataloader'):
        root = cfg[loader].dataset.data_root
        cfg[loader].dataset.data_root = osp.join(data_root, osp.basename(root))
    if pretrained is not None:
        cfg.model.backbone.pretrained = pretrained
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        for sched in cfg.param_scheduler:
            sched.T_max = epochs
    runner = Runner.from_cfg(cfg)
    runner.train()
    backbone = runner.model.backbone
    tuned = [m.tuned_elements() for m in backbone.peft.methods.values()]
    if any(t is not None for t in tuned):  # sparse methods (GPS): the elements that can change
        trainable = sum(t for t in tuned if t is not None)
    else:
        trainable = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    metrics = runner.test()
    return metrics['accuracy/top1'], trainable, runner


def main(argv=None):
    args = parse_args(argv)
    if not args.verbose:
        logging.getLogger('mmengine').setLevel(logging.WARNING)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    export_data(args.data_root, args.fresh)

    source_ckpt = osp.join(args.work_dir, 'source_backbone.pth')
    if args.fresh or not osp.exists(source_ckpt):
        say('pre-training the source backbone on digits 0-4 ...')
        t0 = time.time()
        acc, _, runner = run(SOURCE_CONFIG, osp.join(args.work_dir, 'source'), args.data_root,
                             epochs=args.source_epochs, verbose=args.verbose)
        state = {k: v for k, v in runner.model.backbone.state_dict().items()
                 if not k.startswith('peft.')}
        buffer = io.BytesIO()
        torch.save({'state_dict': state}, buffer)
        atomic_write_bytes(buffer.getvalue(), source_ckpt)
        say(f'source backbone: top-1 {acc:.1f}% on held-out digits 0-4 '
            f'({time.time() - t0:.0f} s) -> {source_ckpt}')

    rows = []
    for method in args.methods:
        config = CONFIG.format(method)
        if not osp.exists(config):
            raise FileNotFoundError(f'--methods {method}: no config {config}')
        say(f'adapting with {method} ...')
        t0 = time.time()
        acc, trainable, _ = run(config, osp.join(args.work_dir, method), args.data_root,
                                pretrained=source_ckpt, epochs=args.epochs,
                                verbose=args.verbose)
        rows.append((method, acc, trainable, time.time() - t0))
        say(f'{method}: top-1 {acc:.1f}%')

    print()
    print('Target task: digits 5-9, inverted + rotated; held-out test split')
    print(f'{"method":<12}{"top-1 (%)":>10}{"trainable backbone params":>28}{"time (s)":>10}')
    for method, acc, trainable, secs in rows:
        print(f'{method:<12}{acc:>10.1f}{trainable:>28,}{secs:>10.0f}')
    return rows


if __name__ == '__main__':
    main()

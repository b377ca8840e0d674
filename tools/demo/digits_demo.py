"""The digits demo: does a PEFT method really adapt a frozen backbone?

    python tools/demo/digits_demo.py [--methods linear lora ... | --all] [--epochs N] [--verbose]
    python tools/demo/digits_demo.py --render-table docs/digits_demo_results.json

1. Exports scikit-learn's bundled handwritten digits to two VTAB-1K folders (no download):
   ``source`` = digits 0-4; ``target`` = digits 5-9, colour-inverted and rotated by 90 degrees.
2. Pre-trains a 4-block ViT from scratch on the source task (``configs/demo/
   vit-tiny_scratch_digits-source.py``) and keeps its backbone as the "pretrained" checkpoint.
3. Adapts that backbone to the target task with each method (``configs/demo/
   vit-tiny_{method}_digits.py``) through the ordinary mmengine Runner, the same path as
   ``tools/train.py`` / ``tools/test.py``, prints held-out top-1 and trainable parameters, and
   writes them to ``<work-dir>/results.json`` (``--render-table`` turns such a file into the
   Markdown table of docs/digits-demo.md).

Steps 1 and 2 are skipped when their outputs exist and were made with the same settings (a
fingerprint is stored next to each); ``--fresh`` redoes them. Every run is seeded (seed 42),
uses deterministic algorithms and a fixed number of CPU threads (``--threads``, default 1), so
the same machine, torch build and thread count reproduce the same table.
"""
import argparse
import glob
import hashlib
import json
import logging
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from tools.demo.common import (SEED, environment, fixed_threads, read_json,  # noqa: E402
                               reused_source, save_source, train_and_test, write_json)
from vpetl_mm.datasets.digits import export_digits_vtab  # noqa: E402

#: the order of the full table (``--all``); every ``configs/demo/vit-tiny_<name>_digits.py``
ALL_METHODS = ('linear', 'lora', 'adapter', 'dtl', 'adaptformer', 'bitfit', 'lntune', 'ssf',
               'repadapter', 'hydra', 'fact-tt', 'fact-tk', 'adapter-plus', 'arc', 'arc-att',
               'houlsby', 'compacter', 'kadaptation', 'sct', 'gps', 'vpt-shallow', 'vpt-deep',
               'mona', 'lorand', 'patt', 'bapat', 'noah', 'dyt', 'dyt-moe', 'lst', 'hst', 'snf',
               'res-tuning', 'res-tuning-bypass', 'last', 'prefix', 'partial-1', 'full')
#: the default handful: the frozen-feature baseline, the reparameterisation, adapter and prompt
#: families (LoRA, Adapter, DTL, VPT-deep) and full fine-tuning as the upper reference
DEFAULT_METHODS = ('linear', 'lora', 'adapter', 'dtl', 'vpt-deep', 'full')
DEFAULT_THREADS = 1
CONFIG = osp.join(ROOT, 'configs', 'demo', 'vit-tiny_{}_digits.py')
SOURCE_CONFIG = osp.join(ROOT, 'configs', 'demo', 'vit-tiny_scratch_digits-source.py')
RESULTS = 'results.json'
COMMITTED_RESULTS = osp.join(ROOT, 'docs', 'digits_demo_results.json')
#: the data export (both folders); a change re-exports
EXPORT = {'source': dict(classes=list(range(5)), shift='none', train_fraction=0.9),
          'target': dict(classes=list(range(5, 10)), shift='invert_rotate', train_fraction=0.7)}
EXPORT_STAMP = 'digits_demo_export.json'
#: labels of the demo table beside the method name / the parameter count
METHOD_NOTES = {'bapat': 'AdaptFormer + PATT', 'noah': '4-block subnet', 'dyt-moe': '4 experts'}
PARAM_NOTES = {'gps': 'tuned elements', 'hst': "incl. the blocks' LayerNorms"}


def say(msg):
    print(f'[digits-demo] {msg}', flush=True)


def available_methods():
    """The names ``<name>`` of the existing ``configs/demo/vit-tiny_<name>_digits.py``."""
    prefix, suffix = osp.basename(CONFIG).split('{}')
    names = (osp.basename(p)[len(prefix):-len(suffix)] for p in glob.glob(CONFIG.format('*')))
    return sorted(names)


def all_methods():
    """Every available method, in the table's order (configs added later at the end)."""
    available = available_methods()
    return ([m for m in ALL_METHODS if m in available]
            + [m for m in available if m not in ALL_METHODS])


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--methods', nargs='+', metavar='NAME',
                        help='method names (configs/demo/vit-tiny_<name>_digits.py) or "all"; '
                        f'default: {" ".join(DEFAULT_METHODS)}')
    parser.add_argument('--all', action='store_true',
                        help=f'the full table: all {len(ALL_METHODS)} methods (--methods all)')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'digits_demo'))
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'digits_vtab'))
    parser.add_argument('--epochs', type=int, help='override the adaptation epochs')
    parser.add_argument('--source-epochs', type=int, help='override the source pre-training epochs')
    parser.add_argument('--threads', type=int, default=DEFAULT_THREADS,
                        help='CPU threads (fixed, since the thread count changes the order of '
                        f'float reductions and so the figures; default {DEFAULT_THREADS})')
    parser.add_argument('--fresh', action='store_true',
                        help='re-export the data and re-train the source backbone')
    parser.add_argument('--verbose', action='store_true', help='show the runner logs')
    parser.add_argument('--render-table', metavar='RESULTS_JSON',
                        help='print the Markdown table of a results file and exit (no training)')
    return parser


def parse_args(argv=None):
    """The command line as parsed; :func:`check_args` resolves and checks the method names."""
    return build_parser().parse_args(argv)


def check_args(parser, args):
    """Resolve ``--all`` / ``--methods all`` / the default handful and check every name (and
    the numbers) before anything is exported or trained; ``parser.error`` lists the valid names."""
    if args.render_table:
        return args
    if args.all:
        if args.methods:
            parser.error('--all and --methods exclude each other')
        args.methods = ['all']
    methods = args.methods or list(DEFAULT_METHODS)
    available = available_methods()
    if 'all' in methods:
        if len(methods) > 1:
            parser.error('--methods all takes no other names')
        methods = all_methods()
    unknown = [m for m in methods if m not in available]
    if unknown:
        parser.error(f'unknown method{"s" if len(unknown) > 1 else ""} {", ".join(unknown)} '
                     f'(no configs/demo/vit-tiny_<name>_digits.py); valid names: all, '
                     f'{", ".join(available)}')
    args.methods = list(dict.fromkeys(methods))  # a repeated name runs once
    if args.threads < 1:
        parser.error(f'--threads must be at least 1, got {args.threads}')
    for opt in ('epochs', 'source_epochs'):
        value = getattr(args, opt)
        if value is not None and value < 1:
            parser.error(f'--{opt.replace("_", "-")} must be at least 1, got {value}')
    return args


def export_data(data_root, fresh):
    """Export both folders unless ``data_root`` holds an export made with :data:`EXPORT`."""
    stamp = osp.join(data_root, EXPORT_STAMP)
    if not fresh and read_json(stamp) == EXPORT:
        return
    sizes = {name: export_digits_vtab(osp.join(data_root, name), **kwargs)
             for name, kwargs in EXPORT.items()}
    os.makedirs(data_root, exist_ok=True)
    write_json(EXPORT, stamp)
    src, tgt = sizes['source'], sizes['target']
    say(f'exported digits: source (0-4) train {src["train800val200"]} / test {src["test"]}, '
        f'target (5-9, inverted + rotated) train {tgt["train800val200"]} / test {tgt["test"]}')


def run(config, work_dir, data_root, pretrained=None, epochs=None, verbose=False):
    """Train then test one config; return (top-1, trainable backbone parameters, runner)."""
    cfg = Config.fromfile(config)
    for loader in ('train_dataloader', 'test_dataloader'):
        root = cfg[loader].dataset.data_root
        cfg[loader].dataset.data_root = osp.join(data_root, osp.basename(root))
    metrics, trainable, runner = train_and_test(cfg, work_dir, pretrained, epochs, verbose)
    return metrics['accuracy/top1'], trainable, runner


def source_fingerprint(args):
    """What the source backbone depends on: its config, epochs, data, seed, threads, torch."""
    with open(SOURCE_CONFIG) as f:
        text = f.read()
    base = osp.join(osp.dirname(SOURCE_CONFIG), 'vit-tiny_digits_base.py')
    if osp.exists(base):
        with open(base) as f:
            text += f.read()
    return {'config_sha256': hashlib.sha256(text.encode()).hexdigest(),
            'source_epochs': args.source_epochs, 'export': EXPORT, 'seed': SEED,
            'threads': args.threads, 'torch': torch.__version__}


def train_source(args, source_ckpt):
    """Pre-train the source backbone unless ``source_ckpt`` was made with the same settings.
    Returns the source run's summary (``reused`` when the checkpoint was kept)."""
    fingerprint = source_fingerprint(args)
    source = reused_source(source_ckpt, fingerprint, args.fresh)
    if source is not None:
        say(f'reusing the source backbone {source_ckpt} (--fresh re-trains it)')
        return dict(source, reused=True)
    say('pre-training the source backbone on digits 0-4 ...')
    t0 = time.time()
    acc, _, runner = run(SOURCE_CONFIG, osp.join(args.work_dir, 'source'), args.data_root,
                         epochs=args.source_epochs, verbose=args.verbose)
    source = {'top1': acc, 'seconds': round(time.time() - t0, 1)}
    save_source(runner, source_ckpt, fingerprint, source)
    say(f'source backbone: top-1 {acc:.1f}% on held-out digits 0-4 '
        f'({source["seconds"]:.0f} s) -> {source_ckpt}')
    return dict(source, reused=False)


def render_table(results):
    """The demo page's Markdown table (a list of lines) of a results dict / results file path."""
    if isinstance(results, str):
        with open(results) as f:
            results = json.load(f)
    lines = ['| method | top-1 (%) | trainable backbone params |', '| --- | --- | --- |']
    for row in results['results']:
        method = row['method']
        name = f'{method} ({METHOD_NOTES[method]})' if method in METHOD_NOTES else method
        params = f'{row["trainable"]:,}'
        if method in PARAM_NOTES:
            params += f' ({PARAM_NOTES[method]})'
        lines.append(f'| {name} | {row["top1"]:.1f} | {params} |')
    return lines


def print_table(rows):
    print()
    print('Target task: digits 5-9, inverted + rotated; held-out test split')
    print(f'{"method":<18}{"top-1 (%)":>10}{"trainable backbone params":>28}{"time (s)":>10}')
    for method, acc, trainable, secs in rows:
        print(f'{method:<18}{acc:>10.1f}{trainable:>28,}{secs:>10.0f}')


def main(argv=None):
    parser = build_parser()
    args = check_args(parser, parser.parse_args(argv))
    if args.render_table:
        print('\n'.join(render_table(args.render_table)))
        return None
    if not args.verbose:
        logging.getLogger('mmengine').setLevel(logging.WARNING)
    with fixed_threads(args.threads):
        return _main(args, argv)


def _main(args, argv):
    t_start = time.time()
    export_data(args.data_root, args.fresh)
    os.makedirs(args.work_dir, exist_ok=True)
    source_ckpt = osp.join(args.work_dir, 'source_backbone.pth')
    source = train_source(args, source_ckpt)

    rows = []
    for method in args.methods:
        say(f'adapting with {method} ...')
        t0 = time.time()
        acc, trainable, _ = run(CONFIG.format(method), osp.join(args.work_dir, method),
                                args.data_root, pretrained=source_ckpt, epochs=args.epochs,
                                verbose=args.verbose)
        rows.append((method, acc, trainable, time.time() - t0))
        say(f'{method}: top-1 {acc:.1f}%')

    results = {
        'command': ['tools/demo/digits_demo.py'] + list(sys.argv[1:] if argv is None else argv),
        'environment': environment(args.threads, 'mmpretrain'),
        'epochs': args.epochs, 'source_epochs': args.source_epochs,
        'source': source,
        'total_seconds': round(time.time() - t_start, 1),
        'results': [{'method': m, 'top1': acc, 'trainable': n, 'seconds': round(s, 1)}
                    for m, acc, n, s in rows]}
    results_path = osp.join(args.work_dir, RESULTS)
    write_json(results, results_path)
    print_table(rows)
    say(f'results -> {results_path}')
    return rows


if __name__ == '__main__':
    main()

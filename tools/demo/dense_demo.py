"""The dense digits demo: does a PEFT method adapt a frozen backbone in real dense pipelines?

    python tools/demo/dense_demo.py [--methods linear lora ... | --all] [--tasks seg det]
                                    [--backbones swin-tiny vit-tiny]

1. Pastes scikit-learn's bundled handwritten digits (no download), upscaled to 14-26 px, at
   random places on noisy canvases of 64-80 px (1-3 digits each) and writes every scene twice:
   a COCO folder (boxes + masks) and an ADE20K-layout folder (label PNGs: background + the
   digit classes; each digit's region is the box its strokes span), for two tasks:
   ``source`` = digits 0-4, ``target`` = digits 5-9 (new classes) rotated by 90 degrees on
   colour-inverted scenes (tools/demo/dense_data.py).
2. Pre-trains each backbone (a tiny Swin, mmseg's SwinTransformer; a tiny plain ViT, mmseg's
   VisionTransformer) from scratch as the backbone of a UperNet segmenting the source digits
   (``configs/demo/dense/upernet_<backbone>_source.py``) and keeps it as the "pretrained"
   checkpoint.
3. Adapts that frozen backbone to the target digits with each method, through the ordinary
   mmengine Runner and the toolboxes' own datasets, models and metrics: a UperNet segmentor
   (``seg``: mIoU by IoUMetric) and a RetinaNet detector (``det``: box mAP by CocoMetric; the
   Swin is mmdet's SwinTransformer, the ViT mmseg's, loading the same checkpoint)
   (``configs/demo/dense/{upernet,retinanet}_<backbone>_<method>.py``). Prints the held-out
   metric, trainable backbone parameters and seconds per method and task, and writes them to
   ``<work-dir>/results.json``.

Steps 1 and 2 are skipped when their outputs exist and were made with the same settings;
``--fresh`` redoes them. Every run is seeded (seed 42), uses deterministic algorithms and a fixed
number of CPU threads (``--threads``, default 1).
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

from tools.demo.common import (SEED, add_run_options, check_run_options,  # noqa: E402
                               environment, fixed_threads, read_json, reused_source,
                               save_source, selected_backbones, train_and_test, write_json)
from tools.demo.dense_data import SCENES, make_scenes  # noqa: E402

#: task name -> (config prefix, toolbox, metric key, metric label, factor to percent)
TASKS = {'seg': ('upernet', 'mmseg', 'mIoU', 'mIoU (%)', 1.0),
         'det': ('retinanet', 'mmdet', 'coco/bbox_mAP', 'box mAP (%)', 100.0)}
DEFAULT_TASKS = ('seg', 'det')
#: each backbone's methods, in table order: V-PETL's dense table on the Swin, the plain-ViT
#: dense methods (configs/dense/vit) on the ViT
ALL_METHODS = {
    'swin-tiny': ('linear', 'lora', 'adapter', 'adaptformer', 'mona', 'bitfit', 'lorand', 'e3va',
                  'full'),
    'vit-tiny': ('linear', 'lora', 'adapter', 'adaptformer', 'dyt', 'dtl', 'vpt-deep', 'full')}
BACKBONES = tuple(ALL_METHODS)
DEFAULT_BACKBONES = ('swin-tiny', )
#: the default handful: the frozen baseline, LoRA, the backbone's own dense method (V-PETL's
#: Mona on the Swin, DyT on the ViT), full fine-tuning
DEFAULT_METHODS = {'swin-tiny': ('linear', 'lora', 'mona', 'full'),
                   'vit-tiny': ('linear', 'lora', 'dyt', 'full')}
DEFAULT_THREADS = 1
CONFIG_DIR = osp.join(ROOT, 'configs', 'demo', 'dense')
#: model, backbone, method
CONFIG = osp.join(CONFIG_DIR, '{}_{}_{}.py')
RESULTS = 'results.json'
SCENES_STAMP = 'dense_digits.json'


def say(msg):
    print(f'[dense-demo] {msg}', flush=True)


def available_methods(backbone, task='seg'):
    """The names ``<name>`` of the existing ``configs/demo/dense/<model>_<backbone>_<name>.py``."""
    model = TASKS[task][0]
    prefix = f'{model}_{backbone}_'
    names = (osp.basename(p)[len(prefix):-3]
             for p in glob.glob(CONFIG.format(model, backbone, '*')))
    return sorted(n for n in names if n not in ('base', 'source'))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--methods', nargs='+', metavar='NAME',
                        help='method names (configs/demo/dense/<model>_<backbone>_<name>.py) '
                        f'or "all" (each backbone\'s own); default: {" ".join(DEFAULT_METHODS)}')
    parser.add_argument('--tasks', nargs='+', metavar='NAME',
                        help=f'{" ".join(TASKS)}; default: {" ".join(DEFAULT_TASKS)}')
    parser.add_argument('--backbones', nargs='+', metavar='NAME',
                        help=f'{" ".join(BACKBONES)}; default: {" ".join(DEFAULT_BACKBONES)} '
                        '(both with --all)')
    parser.add_argument('--all', action='store_true',
                        help='every method of each backbone on both tasks')
    parser.add_argument('--max-images', type=int,
                        help='cap every split (a quick smoke run; the default renders '
                        f'{SCENES["target"]["train"]} target training scenes)')
    add_run_options(parser, osp.join(ROOT, 'work_dirs', 'dense_demo'),
                    osp.join(ROOT, 'data', 'dense_digits'), DEFAULT_THREADS, 'scenes')
    return parser


def _check_methods(parser, methods, backbone, tasks):
    """Every named method has a config for ``backbone`` on every task, else ``parser.error``
    lists the valid names."""
    for task in tasks:
        available = available_methods(backbone, task)
        bad = [m for m in methods if m not in available]
        if bad:
            parser.error(f'unknown method{"s" if len(bad) > 1 else ""} {", ".join(bad)} '
                         f'for {backbone} (no configs/demo/dense/{TASKS[task][0]}_{backbone}'
                         f'_<name>.py); valid names: all, {", ".join(available)}')


def check_args(parser, args):
    """Resolve ``--all`` and check every method / task / backbone name and number before any
    work; ``parser.error`` lists the valid names. ``args.methods`` becomes ``{backbone: [method
    names]}``."""
    backbones = selected_backbones(parser, args, BACKBONES, DEFAULT_BACKBONES)
    tasks = args.tasks or list(DEFAULT_TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f'unknown task {", ".join(unknown)}; valid names: {", ".join(TASKS)}')
    named = ['all'] if args.all else args.methods
    if named and 'all' in named and len(named) > 1:
        parser.error('--methods all takes no other names')
    methods = {}
    for backbone in backbones:
        if named == ['all']:
            chosen = list(ALL_METHODS[backbone])
        else:
            chosen = list(dict.fromkeys(named or DEFAULT_METHODS[backbone]))
        _check_methods(parser, chosen, backbone, tasks)
        methods[backbone] = chosen
    args.methods = methods
    args.tasks = list(dict.fromkeys(tasks))
    check_run_options(parser, args, counts=('max_images', ))
    return args


# --------------------------------------------------------------------------- the data
def export_data(args):
    """Render the scenes unless ``data_root`` holds ones made with the same settings."""
    settings = json.loads(json.dumps(SCENES))
    settings['max_images'] = args.max_images
    stamp = osp.join(args.data_root, SCENES_STAMP)
    if not args.fresh and read_json(stamp) == settings:
        return settings
    sizes = make_scenes(args.data_root, settings, args.max_images)
    write_json(settings, stamp)
    say('rendered scenes (COCO + ADE20K layouts; images, objects): ' + ', '.join(
        f'{name} {n} / {objects}' for name, (n, objects) in sizes.items()))
    return settings


# --------------------------------------------------------------------------- the runs
def point_at_data(cfg, data_root, task):
    """Point the config's train / test datasets (and CocoMetric) at ``data_root``."""
    layout = 'coco' if cfg.default_scope == 'mmdet' else 'ade'
    folder = osp.join(data_root, layout, task)
    for loader in ('train_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = folder
    if layout == 'coco':
        cfg.test_evaluator.ann_file = osp.join(folder, 'annotations', 'instances_test.json')


def backbone_lr(cfg):
    """The learning rate of the backbone's trainable weights: the optimizer's, times the
    ``backbone`` multiplier of ``optim_wrapper.paramwise_cfg`` where the config sets one."""
    keys = cfg.optim_wrapper.get('paramwise_cfg', {}).get('custom_keys', {})
    return cfg.optim_wrapper.optimizer.lr * keys.get('backbone', {}).get('lr_mult', 1.0)


def run(config, work_dir, data_root, pretrained=None, epochs=None, verbose=False):
    """Train then test one config; return (metrics, trainable backbone parameters, runner)."""
    cfg = Config.fromfile(config)
    point_at_data(cfg, data_root, cfg.get('task', 'target'))
    return train_and_test(cfg, work_dir, pretrained, epochs, verbose)


def source_fingerprint(args, backbone, scenes):
    text = ''
    for name in ('base', 'source'):
        with open(CONFIG.format('upernet', backbone, name)) as f:
            text += f.read()
    return {'config_sha256': hashlib.sha256(text.encode()).hexdigest(), 'scenes': scenes,
            'source_epochs': args.source_epochs, 'seed': SEED, 'threads': args.threads,
            'torch': torch.__version__}


def train_source(args, backbone, scenes):
    """Pre-train the source ``backbone`` unless its checkpoint was made with the same settings.
    Returns (checkpoint path, summary)."""
    ckpt = osp.join(args.work_dir, f'source_backbone_{backbone}.pth')
    fingerprint = source_fingerprint(args, backbone, scenes)
    source = reused_source(ckpt, fingerprint, args.fresh)
    if source is not None:
        say(f'reusing the source {backbone} {ckpt} (--fresh re-trains it)')
        return ckpt, dict(source, reused=True)
    say(f'pre-training the source {backbone} (UperNet) on segmenting digits 0-4 ...')
    t0 = time.time()
    metrics, _, runner = run(CONFIG.format('upernet', backbone, 'source'),
                             osp.join(args.work_dir, f'{backbone}_source'), args.data_root,
                             epochs=args.source_epochs, verbose=args.verbose)
    source = {'mIoU': round(float(metrics['mIoU']), 2), 'seconds': round(time.time() - t0, 1)}
    save_source(runner, ckpt, fingerprint, source)
    say(f'source {backbone}: mIoU {source["mIoU"]:.1f}% on held-out scenes of digits 0-4 '
        f'({source["seconds"]:.0f} s) -> {ckpt}')
    return ckpt, dict(source, reused=False)


def adapt(args, backbone, task, method, ckpt):
    """Adapt the frozen source ``backbone`` with ``method`` on ``task``; return the table
    row."""
    model, _, key, _, factor = TASKS[task]
    say(f'adapting {backbone} with {method} ({model}) ...')
    t0 = time.time()
    metrics, trainable, runner = run(CONFIG.format(model, backbone, method),
                                     osp.join(args.work_dir, f'{model}_{backbone}_{method}'),
                                     args.data_root, pretrained=ckpt, epochs=args.epochs,
                                     verbose=args.verbose)
    # CocoMetric returns no figures when nothing was detected: that is a mAP of 0
    row = {'method': method, 'backbone': backbone, 'task': task, 'model': model,
           'metric': round(factor * float(metrics.get(key, 0.0)), 2), 'trainable': trainable,
           'lr': backbone_lr(runner.cfg) if trainable else None,
           'seconds': round(time.time() - t0, 1)}
    say(f'{backbone} {task} {method}: {TASKS[task][3]} {row["metric"]:.1f}')
    return row


def table_lines(rows):
    lines = ['Target task: digits 5-9 (new classes), rotated, on colour-inverted scenes; '
             'held-out scenes',
             f'{"method":<14}{"backbone":<11}{"task":<6}{"metric":<13}{"value":>7}'
             f'{"trainable params":>18}{"lr":>8}{"time (s)":>10}']
    for row in rows:
        label = TASKS[row['task']][3]
        lines.append(f'{row["method"]:<14}{row["backbone"]:<11}{row["task"]:<6}{label:<13}'
                     f'{row["metric"]:>7.1f}{row["trainable"]:>18,}{_lr(row["lr"]):>8}'
                     f'{row["seconds"]:>10.0f}')
    return lines


def _lr(lr):
    return '-' if lr is None else f'{lr:.0e}'


def markdown_table(rows):
    """One line per backbone and method: each task's metric and time side by side, then the
    trainable backbone parameters and the lr they learn at (each task's, in order, where they
    differ; the heads learn at the optimizer's lr)."""
    tasks = list(dict.fromkeys(r['task'] for r in rows))
    cells = {(r['backbone'], r['method'], r['task']): r for r in rows}
    head = ' | '.join(f'{t} {TASKS[t][3]} | {t} time (s)' for t in tasks)
    lines = [f'| method | backbone | {head} | trainable backbone params | their lr |',
             '| --- | --- |' + ' --- | --- |' * len(tasks) + ' --- | --- |']
    for backbone, method in dict.fromkeys((r['backbone'], r['method']) for r in rows):
        got = [cells.get((backbone, method, t)) for t in tasks]
        parts = ' | '.join(f'{c["metric"]:.1f} | {c["seconds"]:.0f}' if c else '- | -'
                           for c in got)
        trainable = next(c['trainable'] for c in got if c)
        lrs = ' / '.join(dict.fromkeys(_lr(c['lr']) for c in got if c))  # one per task if unlike
        lines.append(f'| {method} | {backbone} | {parts} | {trainable:,} | {lrs} |')
    return lines


def main(argv=None):
    parser = build_parser()
    args = check_args(parser, parser.parse_args(argv))
    if not args.verbose:
        logging.getLogger('mmengine').setLevel(logging.WARNING)
    with fixed_threads(args.threads):
        return _main(args, argv)


def _main(args, argv):
    t_start = time.time()
    scenes = export_data(args)
    os.makedirs(args.work_dir, exist_ok=True)
    rows, sources = [], {}
    for backbone, methods in args.methods.items():
        ckpt, sources[backbone] = train_source(args, backbone, scenes)
        rows += [adapt(args, backbone, task, method, ckpt)
                 for task in args.tasks for method in methods]
    env = environment(args.threads, 'mmseg', with_cpu=False)
    env.update(environment(args.threads, 'mmdet', with_cpu=False))
    results = {
        'command': ['tools/demo/dense_demo.py'] + list(sys.argv[1:] if argv is None else argv),
        'environment': env, 'scenes': scenes,
        'epochs': args.epochs, 'source_epochs': args.source_epochs, 'source': sources,
        'total_seconds': round(time.time() - t_start, 1), 'results': rows}
    path = osp.join(args.work_dir, RESULTS)
    write_json(results, path)
    print()
    print('\n'.join(table_lines(rows)))
    say(f'results -> {path}')
    return rows


if __name__ == '__main__':
    main()

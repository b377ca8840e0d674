"""The video digits demo: does a PEFT method adapt a frozen video backbone on decoded video?

    python tools/demo/video_demo.py [--methods linear lora ... | --all] [--backbones ...]

1. Renders scikit-learn's bundled handwritten digits (no download) as 8-frame 32x32 clips of a
   digit (upscaled to 12x12) moving across a dark canvas, encodes them to .mp4 with PyAV and
   writes mmaction list files (``<path> <label>``) for two tasks:
   ``source`` = the identity of digits 0-4, each moving in a random direction at a random speed;
   ``target`` = the direction of motion (right, left, down, up) of digits 5-9, a task that
   needs the order of the frames (a clip moving left is one moving right played backwards).
2. Pre-trains a tiny video ViT (mmaction VisionTransformer, VideoMAE layout) and, with ``--all``
   or ``--backbones``, a tiny Video Swin (SwinTransformer3D) from scratch on the source task
   (``configs/demo/video/<backbone>_source.py``) and keeps each backbone as the "pretrained"
   checkpoint.
3. Adapts that frozen backbone to the target task with each method (``configs/demo/video/
   <backbone>_<method>.py``) through the ordinary mmengine Runner (clips decoded by decord),
   prints held-out top-1, trainable backbone parameters and seconds per method, and writes them
   to ``<work-dir>/results.json``.

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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from tools.demo.common import (SEED, add_run_options, check_run_options,  # noqa: E402
                               environment, fixed_threads, read_json, reused_source,
                               save_source, selected_backbones, train_and_test, write_json)

BACKBONES = ('vit-tiny', 'swin-tiny')
DEFAULT_BACKBONES = ('vit-tiny', )
#: the order of the full table (``--all``)
ALL_METHODS = ('linear', 'lora', 'adapter', 'adaptformer', 'bitfit', 'prefix', 'bapat', 'mona',
               'dyt', 'dtl', 'full')
#: the default handful: the frozen-feature baseline, a reparameterisation (LoRA), an adapter
#: (AdaptFormer), a side network (DTL) and full fine-tuning as the upper reference
DEFAULT_METHODS = ('linear', 'lora', 'adaptformer', 'dtl', 'full')
DEFAULT_THREADS = 1
CONFIG_DIR = osp.join(ROOT, 'configs', 'demo', 'video')
CONFIG = osp.join(CONFIG_DIR, '{}_{}.py')
RESULTS = 'results.json'
#: the clips; a change re-renders them
CLIPS = dict(frames=8, size=32, digit=12, seed=0, fps=8,
             source=dict(classes=[0, 1, 2, 3, 4], test_fraction=0.2),
             target=dict(classes=[5, 6, 7, 8, 9], train_per_class=60, speed=2))
CLIPS_STAMP = 'video_digits.json'
DIRECTIONS = ('right', 'left', 'down', 'up')
METHOD_NOTES = {'bapat': 'AdaptFormer + PATT'}


def say(msg):
    print(f'[video-demo] {msg}', flush=True)


def available_methods(backbone='vit-tiny'):
    """The names ``<name>`` of the existing ``configs/demo/video/<backbone>_<name>.py``."""
    prefix = f'{backbone}_'
    names = (osp.basename(p)[len(prefix):-3]
             for p in glob.glob(CONFIG.format(backbone, '*')))
    return sorted(n for n in names if n not in ('base', 'source'))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--methods', nargs='+', metavar='NAME',
                        help='method names (configs/demo/video/<backbone>_<name>.py) or "all"; '
                        f'default: {" ".join(DEFAULT_METHODS)}')
    parser.add_argument('--backbones', nargs='+', metavar='NAME',
                        help=f'{" ".join(BACKBONES)}; default: {" ".join(DEFAULT_BACKBONES)} '
                        '(--all: both)')
    parser.add_argument('--all', action='store_true',
                        help='every method on both backbones')
    parser.add_argument('--train-per-class', type=int,
                        help='target training clips per direction '
                        f'(default {CLIPS["target"]["train_per_class"]})')
    parser.add_argument('--max-clips', type=int,
                        help='cap every list (a quick smoke run; the default uses all digits)')
    add_run_options(parser, osp.join(ROOT, 'work_dirs', 'video_demo'),
                    osp.join(ROOT, 'data', 'video_digits'), DEFAULT_THREADS, 'clips')
    return parser


def check_args(parser, args):
    """Resolve ``--all`` and check every method / backbone name and number before any work;
    ``parser.error`` lists the valid names."""
    backbones = selected_backbones(parser, args, BACKBONES, DEFAULT_BACKBONES)
    methods = ['all'] if args.all else (args.methods or list(DEFAULT_METHODS))
    if 'all' in methods and len(methods) > 1:
        parser.error('--methods all takes no other names')
    for backbone in backbones:
        available = available_methods(backbone)
        if methods == ['all']:
            continue
        bad = [m for m in methods if m not in available]
        if bad:
            parser.error(f'unknown method{"s" if len(bad) > 1 else ""} {", ".join(bad)} '
                         f'(no configs/demo/video/{backbone}_<name>.py); valid names: all, '
                         f'{", ".join(available)}')
    if methods == ['all']:
        avail = available_methods(backbones[0])
        methods = [m for m in ALL_METHODS if m in avail] + [m for m in avail
                                                           if m not in ALL_METHODS]
    args.methods = list(dict.fromkeys(methods))
    args.backbones = backbones
    check_run_options(parser, args, counts=('train_per_class', 'max_clips'))
    return args


# --------------------------------------------------------------------------- the clips
def render_clip(image, start, velocity, frames=8, size=32, digit=12):
    """``(frames, size, size)`` uint8: the 8x8 ``image`` (values 0-16) upscaled to ``digit``
    pixels, its top-left corner at ``start + t * velocity`` (row, col) in frame ``t``."""
    from PIL import Image
    sprite = Image.fromarray((image * (255.0 / 16.0)).astype(np.uint8))
    sprite = np.asarray(sprite.resize((digit, digit), Image.BILINEAR))
    clip = np.zeros((frames, size, size), np.uint8)
    for t in range(frames):
        r, c = (int(round(v)) for v in np.asarray(start) + t * np.asarray(velocity))
        clip[t, r:r + digit, c:c + digit] = sprite
    return clip


def write_mp4(path, clip, fps=8):
    """A grey ``(T, H, W)`` uint8 clip as an MPEG-4 part 2 .mp4 (PyAV), high bit rate."""
    import av
    with av.open(path, 'w') as container:
        stream = container.add_stream('mpeg4', rate=fps)
        stream.width, stream.height, stream.pix_fmt = clip.shape[2], clip.shape[1], 'yuv420p'
        stream.bit_rate = 2_000_000
        for frame in clip:
            rgb = np.repeat(frame[:, :, None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format='rgb24')))
        container.mux(stream.encode())


def _source_motion(rng, travel):
    """A random direction (8 compass directions) and speed, inside the canvas."""
    angle = rng.randint(8) * np.pi / 4
    speed = rng.uniform(1.0, travel)
    vel = np.array([np.sin(angle), np.cos(angle)]) * speed
    return vel


def _fit_start(rng, vel, frames, room):
    """A random start (row, col) such that the whole path stays on the canvas."""
    start = []
    for v in vel:
        span = abs(v) * (frames - 1)
        lo, hi = (0.0, room - span) if v >= 0 else (span, room)
        start.append(rng.uniform(lo, max(lo, hi)))
    return np.array(start)


def make_clips(data_root, settings=CLIPS, max_clips=None):
    """Render, encode and list both tasks under ``data_root``; return the list sizes."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    rng = np.random.RandomState(settings['seed'])
    frames, size, dsize = settings['frames'], settings['size'], settings['digit']
    room = size - dsize
    os.makedirs(osp.join(data_root, 'videos'), exist_ok=True)
    lists = {}
    # source: digit identity, random motion
    src = settings['source']
    for label, cls in enumerate(src['classes']):
        idx = np.flatnonzero(digits.target == cls)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * src['test_fraction']))
        for k, i in enumerate(idx):
            split = 'test' if k < n_test else 'train'
            vel = _source_motion(rng, room / (frames - 1))
            lists.setdefault(f'source_{split}', []).append(
                (f'source/{i:04d}.mp4', label, digits.images[i], _fit_start(rng, vel, frames,
                                                                             room), vel))
    # target: direction of motion of the other digits, one direction per clip (balanced)
    tgt = settings['target']
    idx = np.flatnonzero(np.isin(digits.target, tgt['classes']))
    rng.shuffle(idx)
    speed = tgt['speed']
    unit = {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)}  # right, left, down, up (row, col)
    n_train = tgt['train_per_class'] * len(DIRECTIONS)
    for k, i in enumerate(idx):
        label = k % len(DIRECTIONS)
        vel = np.array(unit[label], float) * speed
        split = 'train' if k < n_train else 'test'
        lists.setdefault(f'target_{split}', []).append(
            (f'target/{i:04d}.mp4', label, digits.images[i], _fit_start(rng, vel, frames, room),
             vel))
    sizes = {}
    for name, items in sorted(lists.items()):
        items = [items[j] for j in rng.permutation(len(items))]  # classes interleaved
        items = items[:max_clips] if max_clips else items
        lines = []
        for rel, label, image, start, vel in items:
            path = osp.join(data_root, 'videos', rel)
            os.makedirs(osp.dirname(path), exist_ok=True)
            write_mp4(path, render_clip(image, start, vel, frames, size, dsize), settings['fps'])
            lines.append(f'{rel} {label}\n')
        with open(osp.join(data_root, f'{name}.txt'), 'w') as f:
            f.writelines(lines)
        sizes[name] = len(lines)
    return sizes


def export_data(args):
    settings = json.loads(json.dumps(CLIPS))
    if args.train_per_class:
        settings['target']['train_per_class'] = args.train_per_class
    settings['max_clips'] = args.max_clips
    stamp = osp.join(args.data_root, CLIPS_STAMP)
    if not args.fresh and read_json(stamp) == settings:
        return settings
    sizes = make_clips(args.data_root, settings, args.max_clips)
    write_json(settings, stamp)
    say(f'rendered clips (8 frames, 32x32 .mp4): source (digits 0-4, identity) train '
        f'{sizes["source_train"]} / test {sizes["source_test"]}, target (digits 5-9, direction '
        f'of motion) train {sizes["target_train"]} / test {sizes["target_test"]}')
    return settings


# --------------------------------------------------------------------------- the runs
def run(config, work_dir, data_root, pretrained=None, epochs=None, verbose=False):
    """Train then test one config; return (top-1 %, trainable backbone parameters, runner)."""
    cfg = Config.fromfile(config)
    task = cfg.get('task', 'target')
    for loader, split in (('train_dataloader', 'train'), ('test_dataloader', 'test')):
        cfg[loader].dataset.ann_file = osp.join(data_root, f'{task}_{split}.txt')
        cfg[loader].dataset.data_prefix = dict(video=osp.join(data_root, 'videos'))
    metrics, trainable, runner = train_and_test(cfg, work_dir, pretrained, epochs, verbose)
    return 100.0 * metrics['acc/top1'], trainable, runner


def source_fingerprint(args, backbone, clips):
    text = ''
    for name in ('base', 'source'):
        with open(CONFIG.format(backbone, name)) as f:
            text += f.read()
    return {'config_sha256': hashlib.sha256(text.encode()).hexdigest(), 'clips': clips,
            'source_epochs': args.source_epochs, 'seed': SEED, 'threads': args.threads,
            'torch': torch.__version__}


def train_source(args, backbone, clips):
    """Pre-train the source backbone unless its checkpoint was made with the same settings.
    Returns (checkpoint path, summary)."""
    ckpt = osp.join(args.work_dir, f'source_backbone_{backbone}.pth')
    fingerprint = source_fingerprint(args, backbone, clips)
    source = reused_source(ckpt, fingerprint, args.fresh)
    if source is not None:
        say(f'reusing the source {backbone} {ckpt} (--fresh re-trains it)')
        return ckpt, dict(source, reused=True)
    say(f'pre-training the source {backbone} on the identity of moving digits 0-4 ...')
    t0 = time.time()
    acc, _, runner = run(CONFIG.format(backbone, 'source'),
                         osp.join(args.work_dir, f'{backbone}_source'), args.data_root,
                         epochs=args.source_epochs, verbose=args.verbose)
    source = {'top1': round(float(acc), 2), 'seconds': round(time.time() - t0, 1)}
    save_source(runner, ckpt, fingerprint, source)
    say(f'source {backbone}: top-1 {acc:.1f}% on held-out clips of digits 0-4 '
        f'({source["seconds"]:.0f} s) -> {ckpt}')
    return ckpt, dict(source, reused=False)


def table_lines(rows):
    lines = ['Target task: direction of motion (4 classes) of digits 5-9; held-out clips',
             f'{"method":<28}{"backbone":<11}{"top-1 (%)":>10}{"trainable params":>18}'
             f'{"time (s)":>10}']
    for row in rows:
        method = row['method']
        name = f'{method} ({METHOD_NOTES[method]})' if method in METHOD_NOTES else method
        lines.append(f'{name:<28}{row["backbone"]:<11}{row["top1"]:>10.1f}'
                     f'{row["trainable"]:>18,}{row["seconds"]:>10.0f}')
    return lines


def markdown_table(rows):
    lines = ['| method | backbone | top-1 (%) | trainable backbone params | time (s) |',
             '| --- | --- | --- | --- | --- |']
    for row in rows:
        method = row['method']
        name = f'{method} ({METHOD_NOTES[method]})' if method in METHOD_NOTES else method
        lines.append(f'| {name} | {row["backbone"]} | {row["top1"]:.1f} | '
                     f'{row["trainable"]:,} | {row["seconds"]:.0f} |')
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
    clips = export_data(args)
    os.makedirs(args.work_dir, exist_ok=True)
    rows, sources = [], {}
    for backbone in args.backbones:
        ckpt, sources[backbone] = train_source(args, backbone, clips)
        for method in args.methods:
            say(f'adapting {backbone} with {method} ...')
            t0 = time.time()
            acc, trainable, _ = run(CONFIG.format(backbone, method),
                                    osp.join(args.work_dir, f'{backbone}_{method}'),
                                    args.data_root, pretrained=ckpt, epochs=args.epochs,
                                    verbose=args.verbose)
            rows.append({'method': method, 'backbone': backbone, 'top1': round(float(acc), 2),
                         'trainable': trainable, 'seconds': round(time.time() - t0, 1)})
            say(f'{backbone} {method}: top-1 {rows[-1]["top1"]:.1f}%')
    results = {
        'command': ['tools/demo/video_demo.py'] + list(sys.argv[1:] if argv is None else argv),
        'environment': environment(args.threads, 'mmaction', with_cpu=False),
        'clips': clips,
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

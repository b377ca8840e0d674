"""What the digits demos share: the video and dense demos' common command-line options and their
checks, one config trained and tested through the mmengine Runner with the demos' seed, the
source backbone kept under a fingerprint of the settings it was made with, the JSON files, the
fixed thread count and the environment record."""
import contextlib
import importlib
import io
import json
import os
import platform

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from vpetl_mm.compat.fileio import atomic_write_bytes
from vpetl_mm.engine.trainable import trainable_elements

SEED = 42


def add_run_options(parser, work_dir, data_root, default_threads, rendered):
    """Add the options of a demo that pre-trains source backbones: ``--work-dir`` /
    ``--data-root`` (defaults ``work_dir`` / ``data_root``), the schedule overrides, ``--threads``,
    ``--fresh`` (re-renders the ``rendered`` data) and ``--verbose``."""
    parser.add_argument('--work-dir', default=work_dir)
    parser.add_argument('--data-root', default=data_root)
    parser.add_argument('--epochs', type=int, help='override the adaptation epochs')
    parser.add_argument('--source-epochs', type=int, help='override the source pre-training epochs')
    parser.add_argument('--threads', type=int, default=default_threads,
                        help=f'CPU threads (fixed: it changes the figures; default '
                        f'{default_threads})')
    parser.add_argument('--fresh', action='store_true',
                        help=f're-render the {rendered} and re-train the source backbones')
    parser.add_argument('--verbose', action='store_true', help='show the runner logs')


def check_run_options(parser, args, counts=()):
    """``parser.error`` unless ``--threads``, the schedule overrides and the ``counts`` options
    (attribute names) that were given are at least 1."""
    if args.threads < 1:
        parser.error(f'--threads must be at least 1, got {args.threads}')
    for opt in ('epochs', 'source_epochs') + tuple(counts):
        value = getattr(args, opt)
        if value is not None and value < 1:
            parser.error(f'--{opt.replace("_", "-")} must be at least 1, got {value}')


def selected_backbones(parser, args, backbones, default):
    """The ``--backbones`` named (``default``, or all of ``backbones`` with ``--all``), in
    order and once each; ``parser.error`` when ``--all`` meets ``--methods`` or a name is
    unknown."""
    if args.all and args.methods:
        parser.error('--all and --methods exclude each other')
    chosen = args.backbones or list(backbones if args.all else default)
    unknown = [b for b in chosen if b not in backbones]
    if unknown:
        parser.error(f'unknown backbone {", ".join(unknown)}; valid names: {", ".join(backbones)}')
    return list(dict.fromkeys(chosen))


def read_json(path):
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(obj, path):
    atomic_write_bytes((json.dumps(obj, indent=2) + '\n').encode(), path)


def train_and_test(cfg: Config, work_dir, pretrained=None, epochs=None, verbose=False):
    """Train then test ``cfg`` (seeded, deterministic); ``pretrained`` replaces the backbone's
    checkpoint and ``epochs`` the schedule's length where given. Returns ``(test metrics,
    trainable backbone elements, runner)``."""
    cfg.work_dir = work_dir
    cfg.log_level = 'INFO' if verbose else 'WARNING'
    cfg.randomness = dict(seed=SEED, deterministic=True)
    if pretrained is not None:
        cfg.model.backbone.pretrained = pretrained
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        for sched in cfg.param_scheduler:
            sched.T_max = epochs
    runner = Runner.from_cfg(cfg)
    runner.train()
    trainable = trainable_elements(runner.model.backbone)
    return runner.test(), trainable, runner


def reused_source(ckpt, fingerprint, fresh):
    """The summary stored with the source backbone ``ckpt`` when it exists and was made with
    ``fingerprint`` (and ``fresh`` is off); None when it must be (re-)trained."""
    stamp = read_json(ckpt[:-len('.pth')] + '.json')
    if (fresh or not os.path.exists(ckpt) or stamp is None
            or stamp.get('fingerprint') != fingerprint):
        return None
    return stamp['source']


def save_source(runner, ckpt, fingerprint, source):
    """Write the trained backbone's own weights (the method's left out) to ``ckpt`` and
    ``{'fingerprint', 'source'}`` next to it, both atomically."""
    state = {k: v for k, v in runner.model.backbone.state_dict().items()
             if not k.startswith('peft.')}
    buffer = io.BytesIO()
    torch.save({'state_dict': state}, buffer)
    atomic_write_bytes(buffer.getvalue(), ckpt)
    write_json({'fingerprint': fingerprint, 'source': source}, ckpt[:-len('.pth')] + '.json')


@contextlib.contextmanager
def fixed_threads(threads):
    """Run with ``threads`` CPU threads (the float reduction order, and so the figures, depend
    on it), then leave the process as it was (the tests call the demos in-process)."""
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # deterministic cuBLAS on GPUs
    before, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(deterministic)


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads, toolbox, with_cpu=True):
    """What the figures depend on besides the code: versions (torch, mmengine, the package
    named ``toolbox``), device, CPU, threads, seed."""
    import mmengine
    env = {'torch': torch.__version__, 'mmengine': mmengine.__version__,
           toolbox: importlib.import_module(toolbox).__version__,
           'python': platform.python_version(),
           'device': 'cuda' if torch.cuda.is_available() else 'cpu'}
    if with_cpu:
        env['cpu'] = cpu_model()
    env.update(threads=threads, seed=SEED, deterministic=True)
    return env

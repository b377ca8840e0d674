"""What the image and the video digits demos share: one config trained and tested through the
mmengine Runner with the demos' seed, the source backbone kept under a fingerprint of the
settings it was made with, the JSON files, the fixed thread count and the environment record."""
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

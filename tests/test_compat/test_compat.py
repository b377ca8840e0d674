"""The compat layer: safe checkpoint loading, mmaction's missing drn module, atomic writes."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import vpetl_mm  # noqa: F401
from vpetl_mm.compat.fileio import AtomicLocalBackend, atomic_write_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('compat_test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('epoch', np.int64(3))
    ckpt = dict(meta=dict(seed=np.int64(42), time=np.float64(1.5)),
                message_hub=hub.state_dict(), state_dict={'w': torch.ones(2)},
                extra=np.arange(3))
    path = tmp_path / 'ckpt.pth'
    torch.save(ckpt, path)
    loaded = torch.load(path, weights_only=True)
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert loaded['meta']['seed'] == 42
    np.testing.assert_array_equal(loaded['extra'], np.arange(3))


class Evil:

    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_arbitrary_globals_are_still_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'x': Evil()}, path)
    with pytest.raises(Exception, match='Unsupported global|weights_only'):
        torch.load(path, weights_only=True)


def test_mmaction_models_import():
    pytest.importorskip('mmaction')
    code = ('import vpetl_mm, sys; import mmaction.models as m; '
            'from mmaction.registry import MODELS; '
            'assert MODELS.get("Recognizer3D") is not None; '
            'from mmaction.models.localizers.drn.drn import DRN\n'
            'try:\n    DRN()\nexcept ImportError as e:\n    print("drn:", e)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert 'DRN localizer is unavailable' in out.stdout


def test_mmaction_patch_is_narrow():
    code = ('import sys, vpetl_mm; '
            'print(sorted(k for k in sys.modules if k.startswith("mmaction.models.localizers.drn")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    names = eval(out.stdout.strip())
    if names:  # the wheel lacks drn: exactly the two placeholder modules are registered
        assert names == ['mmaction.models.localizers.drn', 'mmaction.models.localizers.drn.drn']


def test_atomic_write_replaces_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / 'a' / 'ckpt.pth'
    atomic_write_bytes(b'old', str(target))
    atomic_write_bytes(b'new', str(target))
    assert target.read_bytes() == b'new'
    assert os.listdir(target.parent) == ['ckpt.pth']


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'ckpt.pth'
    atomic_write_bytes(b'old', str(target))

    def broken_replace(src, dst):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'replace', broken_replace)
    with pytest.raises(OSError, match='disk full'):
        atomic_write_bytes(b'new', str(target))
    assert target.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['ckpt.pth']


def test_atomic_backend_is_registered(tmp_path):
    from mmengine.fileio import get_file_backend
    backend = get_file_backend(str(tmp_path), backend_args=dict(backend='vpetl_atomic'))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put_text('x', tmp_path / 'last_checkpoint')
    assert (tmp_path / 'last_checkpoint').read_text() == 'x'

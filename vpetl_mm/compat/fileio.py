"""An atomic local file backend for checkpoints.

mmengine's ``LocalBackend.put`` opens the target and writes into it, so a run killed while saving
leaves a truncated ``epoch_N.pth`` (and ``last_checkpoint`` naming it), and ``--resume`` then fails.
``AtomicLocalBackend`` writes to a temporary file in the same folder, flushes it to disk and
renames it over the target, so a reader sees either the old file or the complete new one. Select it
with ``backend_args=dict(backend='vpetl_atomic')`` on the ``CheckpointHook`` (the vpetl_mm base
runtime config does).
"""
import os
import tempfile

from mmengine.fileio import LocalBackend, register_backend


def atomic_write_bytes(data: bytes, filepath: str) -> None:
    """Write ``data`` to ``filepath`` through a temporary file and a rename."""
    folder = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp_', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@register_backend('vpetl_atomic', force=True)
class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose ``put`` and ``put_text`` replace files atomically."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), str(filepath))

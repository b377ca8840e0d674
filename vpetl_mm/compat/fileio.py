"""An atomic local file backend for checkpoints.

mmengine's ``LocalBackend.put`` opens the target and writes into it, so a run killed while saving
leaves a truncated ``epoch_N.pth`` (and ``last_checkpoint`` naming it), and ``--resume`` then fails.
``AtomicLocalBackend`` writes to a temporary file in the same folder, flushes it to disk and
renames it over the target, so a reader sees either the old file or the complete new one. Select it
with ``backend_args=dict(backend='vpetl_atomic')`` on the ``CheckpointHook`` (the vpetl_mm base
runtime config does).
"""
from mmengine.fileio import LocalBackend, register_backend

from .atomic_file import atomic_write_bytes

__all__ = ['AtomicLocalBackend', 'atomic_write_bytes']


@register_backend('vpetl_atomic', force=True)
class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose ``put`` and ``put_text`` replace files atomically."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), str(filepath))

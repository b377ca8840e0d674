"""Narrow workarounds for the pinned OpenMMLab stack on current torch and numpy.

Each one is applied at ``import vpetl_mm`` and is documented in its own module:

* :mod:`.checkpoint` allow-lists, for ``torch.load(weights_only=True)``, exactly the types that
  mmengine's own checkpoints hold, so ``--resume`` and ``load_from`` work on torch >= 2.6 while
  the safety check stays on for everything else.
* :mod:`.mmaction` supplies the ``mmaction.models.localizers.drn`` module that the mmaction2 1.2.0
  wheel lacks, so ``import mmaction.models`` works, and makes ``PyAVInit`` count the frames of
  WebM files (their header says 0, which made every sampled clip repeat the first frames).
* :mod:`.fileio` registers the ``vpetl_atomic`` file backend: checkpoints are written to a temporary
  file and renamed, so an interrupted save never leaves a truncated checkpoint.
* :mod:`.dist` registers a DDP wrapper that works on CPU-only machines (gloo).
* :mod:`.drop_path` stores mmcv's drop-path rates as Python floats (the toolboxes pass numpy
  floats, on which ``torch.compile`` broke the graph at every block).
* :mod:`.config_package` adds vpetl_mm to mmengine's table of packages whose configs a
  ``package::path`` base names, so configs can inherit ``vpetl_mm::vtab/...`` (the tools read
  configs with its ``read_config``, which drops the ``vpetl_mm`` scope mmengine gives the
  inherited types).
"""
from .checkpoint import allow_mmengine_checkpoint_types
from .config_package import read_config, register_config_package
from .dist import CPUCompatibleDDP
from .drop_path import patch_drop_path_float
from .fileio import AtomicLocalBackend
from .mmaction import patch_mmaction_missing_drn, patch_pyav_frame_count

allow_mmengine_checkpoint_types()
patch_mmaction_missing_drn()
patch_pyav_frame_count()
patch_drop_path_float()
register_config_package()

__all__ = [
    'allow_mmengine_checkpoint_types', 'patch_drop_path_float', 'patch_mmaction_missing_drn',
    'patch_pyav_frame_count', 'read_config', 'register_config_package',
    'AtomicLocalBackend', 'CPUCompatibleDDP'
]

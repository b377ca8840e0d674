"""Safe loading of mmengine checkpoints on torch >= 2.6.

torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine 0.10.7 calls ``torch.load``
without the argument, and its checkpoints carry a ``message_hub`` of
:class:`~mmengine.logging.HistoryBuffer` objects and numpy arrays and scalars, so ``--resume`` and
``load_from`` fail with ``Unsupported global``. Switching ``weights_only`` off (the usual
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) would let any downloaded checkpoint run code. Instead the
exact types mmengine's checkpoints hold are added to torch's allow-list; everything else is still
refused.
"""
import numpy as np
import torch


def _numpy_types():
    """The numpy callables a pickled array, dtype or scalar refers to."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    types = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes through their classes (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType') and isinstance(getattr(dtypes, name), type)
        ]
    return types


def mmengine_checkpoint_types():
    """Return the list of globals an mmengine checkpoint may contain."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer] + _numpy_types()


def allow_mmengine_checkpoint_types():
    """Allow-list :func:`mmengine_checkpoint_types` for ``weights_only`` loads.

    A no-op on torch versions without ``torch.serialization.add_safe_globals``.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(mmengine_checkpoint_types())

"""Safe loading of mmengine checkpoints on torch >= 2.6.

torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine 0.10.7 calls ``torch.load``
without the argument, and its checkpoints carry a ``message_hub`` of
:class:`~mmengine.logging.HistoryBuffer` objects and numpy arrays and scalars, so ``--resume`` and
``load_from`` fail with ``Unsupported global``. Switching ``weights_only`` off (the usual
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) would let any downloaded checkpoint run code. Instead the
exact types mmengine's checkpoints hold are added to torch's allow-list; everything else is still
refused.

One more thing stands in the way: ``HistoryBuffer.__getstate__`` pickles its four built-in
statistics methods (``min``, ``max``, ``current``, ``mean``) by reference, which pickle encodes as
``getattr(HistoryBuffer, 'min')``. Allowing ``getattr`` would let a checkpoint reach any attribute
of any allowed object (and from there ``os.system``), so instead :func:`slim_history_buffer_pickle`
makes checkpoints written from now on leave the built-in methods out: ``__setstate__`` registers
them again on load anyway. Custom statistics methods still travel (and need a trusted load).
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


BUILTIN_STATISTICS = ('min', 'max', 'current', 'mean')


def _getstate_without_builtin_methods(self) -> dict:
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    custom = {k: v for k, v in self._statistics_methods.items() if k not in BUILTIN_STATISTICS}
    if custom:
        state['statistics_methods'] = custom
    return state


def slim_history_buffer_pickle():
    """Make ``HistoryBuffer`` pickle without references to its built-in methods."""
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _getstate_without_builtin_methods


def allow_mmengine_checkpoint_types():
    """Allow-list :func:`mmengine_checkpoint_types` for ``weights_only`` loads.

    A no-op on torch versions without ``torch.serialization.add_safe_globals``.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(mmengine_checkpoint_types())
        slim_history_buffer_pickle()

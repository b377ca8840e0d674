"""Two fixes for mmaction2 1.2.0: the wheel's missing ``drn`` module and PyAV's WebM frame count.

The mmaction2 1.2.0 wheel lacks ``mmaction/models/localizers/drn``.

``mmaction/models/localizers/__init__.py`` does ``from .drn.drn import DRN``, so without the folder
``import mmaction.models`` (and with it every recognizer) fails. :func:`patch_mmaction_missing_drn`
registers a module for exactly that import in ``sys.modules`` before ``mmaction.models`` is first
imported. Its ``DRN`` raises a clear error if anyone builds it; the rest of mmaction2 imports and
registers as usual. Nothing happens when mmaction2 is absent or ships the folder.
"""
import importlib.util
import os
import sys
import types

DRN_MODULE = 'mmaction.models.localizers.drn'


class MissingDRN:
    """Stands in for ``mmaction.models.localizers.drn.drn.DRN``."""

    def __init__(self, *args, **kwargs):
        raise ImportError(
            'mmaction2 1.2.0 as installed from PyPI ships without '
            'mmaction/models/localizers/drn, so the DRN localizer is unavailable; '
            'install mmaction2 from source to use it.')


def _wheel_lacks_drn():
    spec = importlib.util.find_spec('mmaction')
    if spec is None or not spec.submodule_search_locations:
        return False
    root = list(spec.submodule_search_locations)[0]
    localizers = os.path.join(root, 'models', 'localizers')
    return (os.path.isdir(localizers)
            and not os.path.isdir(os.path.join(localizers, 'drn')))


def patch_mmaction_missing_drn():
    """Register the placeholder modules; return True if it was needed."""
    if DRN_MODULE in sys.modules or not _wheel_lacks_drn():
        return False
    package = types.ModuleType(DRN_MODULE)
    package.__path__ = []  # a package, so ``drn.drn`` resolves below it
    module = types.ModuleType(DRN_MODULE + '.drn')
    module.DRN = MissingDRN
    package.drn = module
    sys.modules[DRN_MODULE] = package
    sys.modules[DRN_MODULE + '.drn'] = module
    return True


def _count_packets(container) -> int:
    """Frames of the first video stream, counted from its packets (no decoding), the reader
    left at the start again."""
    frames = sum(1 for packet in container.demux(video=0) if packet.size)
    container.seek(0)
    return frames


def patch_pyav_frame_count():
    """mmaction2's ``PyAVInit`` takes ``total_frames`` from the stream header, which WebM /
    Matroska files (Something-Something V2 ships them) leave at 0: ``SampleFrames`` then
    reduces every index modulo 0 and the clip silently repeats the first frames. Where the
    header says 0, the frames are counted from the packets instead. Return True if patched."""
    if importlib.util.find_spec('mmaction') is None or importlib.util.find_spec('av') is None:
        return False
    from mmaction.datasets.transforms import loading
    original = loading.PyAVInit.transform
    if getattr(original, '_vpetl_counts_frames', False):
        return False

    def transform(self, results):
        results = original(self, results)
        if not results['total_frames']:
            results['total_frames'] = _count_packets(results['video_reader'])
        return results

    transform._vpetl_counts_frames = True
    loading.PyAVInit.transform = transform
    return True

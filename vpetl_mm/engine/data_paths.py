"""Check the dataset paths of a config before a run starts, naming the config key.

mmengine's datasets resolve ``ann_file`` (and the data prefixes) against ``data_root``, and a
relative ``data_root`` against the working directory. A wrong path otherwise surfaces deep in the
first dataloader build, after the model was built, without saying which key of the config held it.
"""
import os.path as osp
from typing import Iterator, List, Optional, Tuple

from mmengine.registry import DATASETS

from .video_lists import summarise, video_list_problems

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _is_local(path) -> bool:
    return isinstance(path, str) and '://' not in path


def _datasets(cfg, key: str) -> Iterator[Tuple[str, dict]]:
    """``(config key, dataset config)`` for ``cfg`` and the datasets it wraps."""
    if not isinstance(cfg, dict):
        return
    yield key, cfg
    if isinstance(cfg.get('dataset'), dict):  # RepeatDataset, ClassBalancedDataset, ...
        yield from _datasets(cfg['dataset'], f'{key}.dataset')
    for i, inner in enumerate(cfg.get('datasets') or ()):  # ConcatDataset
        yield from _datasets(inner, f'{key}.datasets.{i}')


def _dataset_class(dataset_type):
    if not isinstance(dataset_type, str):
        return dataset_type
    try:
        return DATASETS.get(dataset_type)
    except (KeyError, ImportError):
        return None


def _problems(key: str, dataset: dict, read_lists: bool = True) -> List[Tuple[str, str]]:
    """``(absolute path, message)`` for what one dataset config lacks (nothing is built)."""
    if dataset.get('backend_args') or dataset.get('file_client_args'):
        return []  # paths on another storage backend: not ours to check
    data_root = dataset.get('data_root')
    if _is_local(data_root) and data_root and not osp.isdir(data_root):
        return [(osp.abspath(data_root), f'{key}.data_root={data_root!r} (resolved to '
                 f'{osp.abspath(data_root)}) is not a folder')]
    files = []
    ann_file = dataset.get('ann_file')
    if _is_local(ann_file) and ann_file:
        files.append(('ann_file', ann_file))
    dataset_class = _dataset_class(dataset.get('type'))
    expected = getattr(dataset_class, 'expected_files', None)
    if expected is not None:
        files += list(expected(dataset))
    problems = []
    for label, path in files:
        resolved = path
        if data_root and _is_local(data_root) and not osp.isabs(path):
            resolved = osp.join(data_root, path)
        if not osp.exists(resolved):
            problems.append((osp.abspath(resolved), f'{key}: {label} {path!r} (resolved to '
                             f'{osp.abspath(resolved)}) does not exist'))
    if not read_lists or problems:
        return problems
    if str(dataset.get('type', '')).split('.')[-1] == 'VideoDataset':
        root = data_root if _is_local(data_root) else None
        listed = video_list_problems(key, dataset, root)
    else:
        lister = getattr(dataset_class, 'list_problems', None)
        listed = lister(key, dataset) if lister is not None else []
    return problems + [(f'{key}:{message}', message) for message in summarise(listed)]


def check_dataset_paths(cfg, loaders=LOADERS) -> None:
    """Raise ``FileNotFoundError`` listing every missing dataset folder or list file of ``cfg``,
    for MMAction2's ``VideoDataset`` every list line that does not parse or names a missing,
    empty or non-video file (:mod:`.video_lists`), and for a dataset class with a
    ``list_problems(key, dataset_cfg)`` static method (``VTAB1k``: lines that do not parse,
    missing images) what it reports; ``check_dataset_files=False`` in the config skips reading
    the lists.

    Each problem names the config key (``train_dataloader.dataset.data_root``), the path as
    written and the absolute path it was resolved to. Datasets may declare further files through
    an ``expected_files(dataset_cfg)`` static method returning ``(description, path)`` pairs,
    with paths relative to ``data_root`` as mmengine resolves them.
    """
    problems: List[str] = []
    seen = set()
    read_lists = cfg.get('check_dataset_files', True) is not False
    for field in loaders:
        loader: Optional[dict] = cfg.get(field)
        if not isinstance(loader, dict) or not isinstance(loader.get('dataset'), dict):
            continue
        for key, dataset in _datasets(loader['dataset'], f'{field}.dataset'):
            for path, message in _problems(key, dataset, read_lists):
                if path not in seen:  # val_dataloader is often the test loader again
                    seen.add(path)
                    problems.append(message)
    if problems:
        raise FileNotFoundError(
            'dataset paths or files of the config are missing or unreadable (relative paths '
            'are resolved against the working directory ' + osp.abspath('.') + '):\n  ' +
            '\n  '.join(problems) +
            '\nPut the data there, or point the config at it (a data_root can be set with '
            '--cfg-options, e.g. train_dataloader.dataset.data_root=/path/to/data).')

"""VTAB-1K in the folder / list-file layout of the VPT, SSF and NOAH releases."""
import os.path as osp
from typing import List, Optional, Tuple

from mmpretrain.datasets import BaseDataset

from vpetl_mm.engine.video_lists import summarise
from vpetl_mm.registry import DATASETS

#: config-file name -> (folder name in the usual VTAB-1K release, number of classes)
VTAB_DATASETS = {
    'cifar100': ('cifar', 100),
    'caltech101': ('caltech101', 102),
    'dtd': ('dtd', 47),
    'oxford_flowers102': ('oxford_flowers102', 102),
    'oxford_iiit_pet': ('oxford_iiit_pet', 37),
    'svhn': ('svhn', 10),
    'sun397': ('sun397', 397),
    'patch_camelyon': ('patch_camelyon', 2),
    'eurosat': ('eurosat', 10),
    'resisc45': ('resisc45', 45),
    'diabetic_retinopathy': ('diabetic_retinopathy', 5),
    'clevr_count': ('clevr_count', 8),
    'clevr_dist': ('clevr_dist', 6),
    'dmlab': ('dmlab', 6),
    'kitti': ('kitti', 4),
    'dsprites_loc': ('dsprites_loc', 16),
    'dsprites_ori': ('dsprites_ori', 16),
    'smallnorb_azi': ('smallnorb_azi', 18),
    'smallnorb_ele': ('smallnorb_ele', 9),
}
SPLITS = ('train800', 'val200', 'train800val200', 'test')


def read_list(list_file: str, data_root: str, num_classes: Optional[int] = None,
              check_files: bool = True) -> Tuple[List[dict], List[str], int]:
    """Read a VTAB-1K list file: ``(samples, problems, missing)``.

    ``samples`` are ``dict(img_path, gt_label)`` with ``img_path`` joined to ``data_root``;
    ``problems`` name ``<list_file>:<line>``, in line order, for every line that does not parse
    as ``<image path> <label>``, every label outside ``[0, num_classes)`` and, with
    ``check_files``, every image that does not exist; ``missing`` counts the last kind.
    """
    samples, problems, missing = [], [], 0
    with open(list_file) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            where = f'{list_file}:{lineno}'
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                problems.append(f'{where}: expected "<image path> <label>", got {line!r}')
                continue
            label = int(parts[1])
            if label < 0 or (num_classes is not None and label >= num_classes):
                problems.append(f'{where}: label {label} is outside [0, {num_classes}) '
                                f'(num_classes={num_classes})')
                continue
            path = osp.join(data_root, parts[0])
            if check_files and not osp.isfile(path):
                problems.append(f'{where}: image {path} does not exist')
                missing += 1
            samples.append(dict(img_path=path, gt_label=label))
    return samples, problems, missing


@DATASETS.register_module()
class VTAB1k(BaseDataset):
    """One VTAB-1K dataset folder::

        <data_root>/{train800,val200,train800val200,test}.txt
        <data_root>/images/<split>/<index>.jpg        # paths as listed, relative to data_root

    Each list line is ``<relative image path> <integer label>``; the label is the text after the
    last whitespace, so paths may contain spaces.

    Args:
        data_root (str): the dataset folder, e.g. ``data/vtab-1k/cifar``.
        split (str): ``train800``, ``val200``, ``train800val200`` (the standard training set) or
            ``test``.
        num_classes (int, optional): when given, every label must lie in ``[0, num_classes)``;
            class names default to ``'0' .. 'num_classes-1'``. When omitted it is the largest
            label plus one.
        check_files (bool): check that every listed image exists when the dataset is built
            (all missing ones are reported at once, with list file and line). Defaults to True;
            turn it off for very large folders on slow storage.
        **kwargs: passed to :class:`mmpretrain.datasets.BaseDataset` (``pipeline``, ...).
    """

    def __init__(self, data_root: str, split: str = 'train800val200',
                 num_classes: Optional[int] = None, check_files: bool = True, **kwargs):
        if split not in SPLITS:
            raise ValueError(f'VTAB1k split={split!r}; choose one of {SPLITS}')
        self.split = split
        self.num_classes = num_classes
        self.check_files = check_files
        # like mmengine's own datasets: data_root is taken as written (relative to the working
        # directory when relative) and the list file is relative to it; BaseDataset joins them
        ann_file = f'{split}.txt'
        where = f'data_root={data_root!r} (resolved to {osp.abspath(data_root)})'
        if not osp.isdir(data_root):
            raise FileNotFoundError(f'VTAB1k: {where} is not a folder; put the VTAB-1K dataset '
                                    'folder there or set the dataset\'s data_root in the config')
        if not osp.isfile(osp.join(data_root, ann_file)):
            raise FileNotFoundError(
                f'VTAB1k: {where} has no list file {ann_file} for split={split!r} (a VTAB-1K '
                f'folder holds {", ".join(s + ".txt" for s in SPLITS)})')
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix='', **kwargs)

    @staticmethod
    def expected_files(cfg: dict):
        """``(description, path)`` of the list file a dataset config needs (relative to its
        ``data_root``); the tools check them before a run starts."""
        split = cfg.get('split', 'train800val200')
        return [(f'the list file of split={split!r}', f'{split}.txt')] if split in SPLITS else []

    @staticmethod
    def list_problems(key: str, cfg: dict) -> List[str]:
        """The problems of the list file a dataset config ``cfg`` (at config key ``key``) names:
        lines that do not parse, labels out of range, missing images; the tools report them
        before a run starts, so a bad test list does not fail after the whole schedule."""
        data_root, split = cfg.get('data_root'), cfg.get('split', 'train800val200')
        if not data_root or split not in SPLITS:
            return []
        data_root = osp.abspath(data_root)  # the paths in the report are the resolved ones
        list_file = osp.join(data_root, f'{split}.txt')
        if not osp.isfile(list_file):
            return []  # reported by the folder / list-file check
        problems = read_list(list_file, data_root, cfg.get('num_classes'),
                             cfg.get('check_files', True))[1]
        return [f'{key}.split={split!r} {p}' for p in problems]

    def load_data_list(self):
        samples, problems, missing = read_list(self.ann_file, self.data_root, self.num_classes,
                                               self.check_files)
        if problems:
            error = FileNotFoundError if missing == len(problems) else ValueError
            raise error(f'VTAB1k: {len(problems)} bad line{"s" if len(problems) > 1 else ""} '
                        f'in {self.ann_file}:\n  ' + '\n  '.join(summarise(problems)))
        if not samples:
            raise ValueError(f'{self.ann_file} lists no images')
        if self._metainfo.get('classes') is None:
            n = self.num_classes or 1 + max(s['gt_label'] for s in samples)
            self._metainfo['classes'] = tuple(str(i) for i in range(n))
        return samples

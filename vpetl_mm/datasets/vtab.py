"""VTAB-1K in the folder / list-file layout of the VPT, SSF and NOAH releases."""
import os.path as osp
from typing import Optional

from mmpretrain.datasets import BaseDataset

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
        **kwargs: passed to :class:`mmpretrain.datasets.BaseDataset` (``pipeline``, ...).
    """

    def __init__(self, data_root: str, split: str = 'train800val200',
                 num_classes: Optional[int] = None, **kwargs):
        if split not in SPLITS:
            raise ValueError(f'VTAB1k split={split!r}; choose one of {SPLITS}')
        self.split = split
        self.num_classes = num_classes
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

    def load_data_list(self):
        samples = []
        with open(self.ann_file) as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                    raise ValueError(f'{self.ann_file}:{lineno}: expected "<image path> <label>", '
                                     f'got {line!r}')
                label = int(parts[1])
                if label < 0 or (self.num_classes is not None and label >= self.num_classes):
                    raise ValueError(f'{self.ann_file}:{lineno}: label {label} is outside '
                                     f'[0, {self.num_classes}) (num_classes={self.num_classes})')
                samples.append(dict(img_path=osp.join(self.data_root, parts[0]),
                                    gt_label=label))
        if not samples:
            raise ValueError(f'{self.ann_file} lists no images')
        if self._metainfo.get('classes') is None:
            n = self.num_classes or 1 + max(s['gt_label'] for s in samples)
            self._metainfo['classes'] = tuple(str(i) for i in range(n))
        return samples

"""VTAB1k: the VTAB-1K folder / list-file layout, its errors, and the benchmark pipeline."""
import os.path as osp

import pytest
from PIL import Image

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from vpetl_mm.datasets import VTAB_DATASETS, VTAB1k  # noqa: E402
from vpetl_mm.registry import DATASETS  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture
def vtab_root(tmp_path):
    splits = {'train800': 4, 'val200': 2, 'test': 3}
    for split, n in splits.items():
        (tmp_path / 'images' / split).mkdir(parents=True)
        lines = []
        for i in range(n):
            name = f'images/{split}/{i:06d}.jpg' if i else f'images/{split}/with space.jpg'
            Image.new('RGB', (20, 16), (i * 40, 0, 0)).save(tmp_path / name)
            lines.append(f'{name} {i % 3}\n')
        (tmp_path / f'{split}.txt').write_text(''.join(lines))
    (tmp_path / 'train800val200.txt').write_text(
        (tmp_path / 'train800.txt').read_text() + (tmp_path / 'val200.txt').read_text())
    return tmp_path


def test_splits(vtab_root):
    sizes = {s: len(VTAB1k(str(vtab_root), split=s, num_classes=3))
             for s in ('train800', 'val200', 'train800val200', 'test')}
    assert sizes == {'train800': 4, 'val200': 2, 'train800val200': 6, 'test': 3}
    ds = VTAB1k(str(vtab_root), split='test', num_classes=3)
    info = ds.get_data_info(0)
    assert info['img_path'] == osp.join(str(vtab_root), 'images/test/with space.jpg')
    assert [ds.get_data_info(i)['gt_label'] for i in range(3)] == [0, 1, 2]
    assert ds.metainfo['classes'] == ('0', '1', '2')


def test_num_classes_inferred_and_blank_lines(vtab_root):
    (vtab_root / 'val200.txt').write_text('images/val200/with space.jpg 4\n\n'
                                          'images/val200/000001.jpg   1  \n')
    ds = VTAB1k(str(vtab_root), split='val200')
    assert len(ds) == 2 and ds.num_classes is None
    assert ds.metainfo['classes'] == ('0', '1', '2', '3', '4')
    assert ds.get_data_info(1)['gt_label'] == 1
    named = VTAB1k(str(vtab_root), split='val200', metainfo=dict(classes=list('abcde')))
    assert tuple(named.metainfo['classes']) == ('a', 'b', 'c', 'd', 'e')


def test_errors_name_file_and_line(vtab_root):
    with pytest.raises(ValueError, match='split'):
        VTAB1k(str(vtab_root), split='train')
    (vtab_root / 'test.txt').unlink()
    with pytest.raises(FileNotFoundError, match=r'test\.txt.*train800\.txt, val200\.txt'):
        VTAB1k(str(vtab_root), split='test')
    (vtab_root / 'val200.txt').write_text('images/a.jpg 0\nimages/b.jpg\n')
    with pytest.raises(ValueError, match=r'val200.txt:2'):
        VTAB1k(str(vtab_root), split='val200')
    (vtab_root / 'val200.txt').write_text('images/a.jpg 0\nimages/b.jpg 7\n')
    with pytest.raises(ValueError, match=r'val200.txt:2: label 7'):
        VTAB1k(str(vtab_root), split='val200', num_classes=3)
    (vtab_root / 'val200.txt').write_text('images/a.jpg 0\n\nimages/b.jpg x\n')
    with pytest.raises(ValueError, match=r'val200.txt:3'):
        VTAB1k(str(vtab_root), split='val200')
    (vtab_root / 'val200.txt').write_text('images/a.jpg -1\n')
    with pytest.raises(ValueError, match=r'val200.txt:1: label -1'):
        VTAB1k(str(vtab_root), split='val200')


def test_missing_images_reported_at_once_when_built(vtab_root):
    (vtab_root / 'images' / 'test' / '000001.jpg').unlink()
    (vtab_root / 'images' / 'test' / '000002.jpg').unlink()
    with pytest.raises(FileNotFoundError) as err:
        VTAB1k(str(vtab_root), split='test', num_classes=3)
    message = str(err.value)
    assert '2 bad lines' in message
    for line, name in ((2, '000001.jpg'), (3, '000002.jpg')):
        assert (f"{vtab_root / 'test.txt'}:{line}: image "
                f"{osp.join(str(vtab_root), 'images/test', name)} does not exist") in message
    # very large folders on slow storage: the check can be turned off
    assert len(VTAB1k(str(vtab_root), split='test', num_classes=3, check_files=False)) == 3


def test_list_problems_before_a_run(vtab_root):
    """The tools' pre-flight check reads the lists: config key, split, list file and line."""
    from vpetl_mm.engine.data_paths import check_dataset_paths
    init_default_scope('mmpretrain')
    (vtab_root / 'images' / 'test' / '000002.jpg').unlink()
    (vtab_root / 'val200.txt').write_text('images/val200/000001.jpg one\n')
    dataset = dict(type='vpetl_mm.VTAB1k', data_root=str(vtab_root))
    cfg = Config(dict(train_dataloader=dict(dataset=dict(dataset, split='train800')),
                      val_dataloader=dict(dataset=dict(dataset, split='val200')),
                      test_dataloader=dict(dataset=dict(dataset, split='test'))))
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(cfg)
    message = str(err.value)
    assert (f"test_dataloader.dataset.split='test' {vtab_root / 'test.txt'}:3: image "
            f"{vtab_root / 'images' / 'test' / '000002.jpg'} does not exist") in message
    assert (f"val_dataloader.dataset.split='val200' {vtab_root / 'val200.txt'}:1: expected "
            '"<image path> <label>"') in message
    assert 'train_dataloader.dataset.split' not in message  # its list and images are there
    cfg.check_dataset_files = False  # the lists are not read
    check_dataset_paths(cfg)


def test_benchmark_pipeline_through_registry(vtab_root):
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'datasets', 'vtab.py'))
    ds = DATASETS.build(dict(type='vpetl_mm.VTAB1k', data_root=str(vtab_root), split='test',
                             num_classes=3, pipeline=cfg.test_pipeline))
    packed = ds[1]
    assert tuple(packed['inputs'].shape) == (3, 224, 224)
    assert int(packed['data_samples'].gt_label) == 1
    aug = DATASETS.build(dict(type='vpetl_mm.VTAB1k', data_root=str(vtab_root),
                              split='train800', pipeline=cfg.train_pipeline_aug))
    assert tuple(aug[0]['inputs'].shape) == (3, 224, 224)


def test_catalogue():
    assert len(VTAB_DATASETS) == 19
    assert VTAB_DATASETS['cifar100'] == ('cifar', 100)
    assert VTAB_DATASETS['smallnorb_ele'] == ('smallnorb_ele', 9)


def test_relative_data_root_is_joined_once(vtab_root, monkeypatch):
    """A relative data_root (as every shipped config writes it) resolves against the working
    directory, once: mmengine's BaseDataset joins the list file to it."""
    monkeypatch.chdir(vtab_root.parent)
    ds = VTAB1k(vtab_root.name, split='test', num_classes=3)
    assert ds.ann_file == osp.join(vtab_root.name, 'test.txt')
    assert ds.get_data_info(1)['img_path'] == osp.join(vtab_root.name, 'images/test/000001.jpg')
    assert osp.isfile(ds.get_data_info(1)['img_path'])


def test_missing_folder_names_written_and_resolved_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        VTAB1k('data/vtab-1k/cifar', split='test')
    message = str(err.value)
    assert "data_root='data/vtab-1k/cifar'" in message
    assert str(tmp_path / 'data' / 'vtab-1k' / 'cifar') in message


def test_dataset_paths_checked_with_config_keys(vtab_root, tmp_path, monkeypatch):
    from vpetl_mm.engine.data_paths import check_dataset_paths
    init_default_scope('mmpretrain')
    monkeypatch.chdir(vtab_root.parent)
    dataset = dict(type='vpetl_mm.VTAB1k', data_root=vtab_root.name, split='test')
    cfg = Config(dict(train_dataloader=dict(dataset=dict(dataset, split='train800val200')),
                      val_dataloader=dict(dataset=dataset), test_dataloader=dict(dataset=dataset)))
    check_dataset_paths(cfg)  # everything there: silent

    (vtab_root / 'train800val200.txt').unlink()
    cfg.val_dataloader.dataset.data_root = 'data/elsewhere'
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(cfg)
    message = str(err.value)
    assert ("train_dataloader.dataset: the list file of split='train800val200' "
            "'train800val200.txt' (resolved to "
            f"{vtab_root / 'train800val200.txt'}) does not exist") in message
    assert ("val_dataloader.dataset.data_root='data/elsewhere' (resolved to "
            f"{vtab_root.parent / 'data' / 'elsewhere'}) is not a folder") in message
    assert 'test_dataloader' not in message  # its folder and list file are there

    # mmengine-style datasets: ann_file relative to data_root, wrappers walked
    wrapped = Config(dict(train_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=2,
        dataset=dict(type='CustomDataset', data_root=vtab_root.name, ann_file='missing.txt')))))
    with pytest.raises(FileNotFoundError, match=r"train_dataloader\.dataset\.dataset: ann_file "
                       r"'missing\.txt'"):
        check_dataset_paths(wrapped, loaders=('train_dataloader', ))

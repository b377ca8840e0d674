"""The dense digits demo (tools/demo/dense_demo.py): its command line, its scenes as the
toolboxes' own datasets read them (COCO boxes that match the ADE20K-layout label maps, the
target's rotated digits on colour-inverted scenes), and a shortened run (few scenes, 1 source
epoch, 2 adaptation epochs) of the linear baseline and LoRA on the segmentation task: the table
and results.json hold both rows with numeric figures."""
import contextlib
import io
import json

import numpy as np
import pytest

pytest.importorskip('sklearn')
pytest.importorskip('mmseg')
pytest.importorskip('mmdet')
pytest.importorskip('pycocotools')

from mmengine.config import Config  # noqa: E402

from tools.demo import dense_demo  # noqa: E402
from tools.demo.dense_data import SCENES, class_names, make_scenes, seg_class_names  # noqa: E402

SHORT = ['--methods', 'linear', 'lora', '--tasks', 'seg', '--backbones', 'swin-tiny', 'vit-tiny',
         '--source-epochs', '1', '--epochs', '2', '--max-images', '16']


def resolve(argv):
    parser = dense_demo.build_parser()
    args = dense_demo.check_args(parser, parser.parse_args(argv))
    return args.methods, args.tasks


def test_method_lists_match_the_configs():
    assert dense_demo.BACKBONES == ('swin-tiny', 'vit-tiny')
    for backbone in dense_demo.BACKBONES:
        for task in dense_demo.TASKS:
            assert dense_demo.available_methods(backbone, task) == \
                sorted(dense_demo.ALL_METHODS[backbone])
        assert set(dense_demo.DEFAULT_METHODS[backbone]) < set(dense_demo.ALL_METHODS[backbone])


def test_method_selection():
    tasks = list(dense_demo.DEFAULT_TASKS)
    assert resolve([]) == ({'swin-tiny': ['linear', 'lora', 'mona', 'full']}, tasks)
    assert resolve(['--all']) == (
        {b: list(m) for b, m in dense_demo.ALL_METHODS.items()}, tasks)
    assert resolve(['--all', '--backbones', 'vit-tiny']) == (
        {'vit-tiny': list(dense_demo.ALL_METHODS['vit-tiny'])}, tasks)
    assert resolve(['--backbones', 'vit-tiny']) == (
        {'vit-tiny': ['linear', 'lora', 'dyt', 'full']}, tasks)
    assert resolve(['--methods', 'lora', 'linear', 'lora', '--tasks', 'det', '--backbones',
                    'vit-tiny', 'swin-tiny']) == (
        {'vit-tiny': ['lora', 'linear'], 'swin-tiny': ['lora', 'linear']}, ['det'])


@pytest.mark.parametrize('argv, message', [
    (['--methods', 'lora', 'foo'], 'unknown method foo for swin-tiny'),
    (['--methods', 'foo', 'linear', 'bar'], 'unknown methods foo, bar'),
    (['--methods', 'source'], 'unknown method source'),
    (['--methods', 'mona', '--backbones', 'vit-tiny'], 'unknown method mona for vit-tiny'),
    (['--backbones', 'resnet'], 'unknown backbone resnet; valid names: swin-tiny, vit-tiny'),
    (['--tasks', 'pose'], 'unknown task pose'),
    (['--all', '--methods', 'lora'], '--all and --methods exclude each other'),
    (['--epochs', '0'], '--epochs must be at least 1'),
])
def test_bad_command_line_stops_before_any_work(tmp_path, capsys, argv, message):
    work, data = tmp_path / 'work', tmp_path / 'data'
    with pytest.raises(SystemExit) as exc:
        dense_demo.main(argv + ['--work-dir', str(work), '--data-root', str(data)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if 'unknown method' in message:
        assert ('valid names: all, adapter, adaptformer, dtl, dyt' if 'vit-tiny' in message
                else 'valid names: all, adapter, adaptformer, bitfit') in err
    assert not work.exists() and not data.exists()


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp('dense_digits')
    sizes = make_scenes(str(root), SCENES, max_images=6)
    return root, sizes


def _build(registry_scope, cfg):
    from mmengine.registry import init_default_scope
    import vpetl_mm  # noqa: F401  (the plugin; registers nothing the datasets need)
    assert vpetl_mm
    init_default_scope(registry_scope)
    if registry_scope == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    return DATASETS.build(cfg)


def test_scenes_load_with_the_toolbox_datasets(scenes):
    """CocoDataset and BaseSegDataset (ADE20K layout) read the written folders with the demo's
    class names; images come in different sizes; each label map matches its COCO boxes."""
    root, sizes = scenes
    assert all(n == 6 and objects >= 6 for n, objects in sizes.values()), sizes
    classes = SCENES['target']['classes']
    coco = _build('mmdet', dict(
        type='CocoDataset', data_root=str(root / 'coco' / 'target'),
        ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
        metainfo=dict(classes=class_names(classes)), test_mode=True, pipeline=[]))
    ade = _build('mmseg', dict(
        type='BaseSegDataset', data_root=str(root / 'ade' / 'target'), img_suffix='.jpg',
        seg_map_suffix='.png', reduce_zero_label=False,
        metainfo=dict(classes=seg_class_names(classes)),
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]))
    assert len(coco) == len(ade) == 6
    assert coco.metainfo['classes'] == ('digit-5', 'digit-6', 'digit-7', 'digit-8', 'digit-9')
    assert ade.metainfo['classes'][0] == 'background' and len(ade.metainfo['classes']) == 6
    shapes = set()
    for k in range(len(coco)):
        info, sample = coco.get_data_info(k), ade[k]
        assert info['img_path'].rsplit('/', 1)[1][:-4] == \
            sample['img_path'].rsplit('/', 1)[1][:-4]
        labels = sample['gt_seg_map']
        assert labels.shape == (info['height'], info['width']) == sample['img'].shape[:2]
        shapes.add(labels.shape)
        check_label_map(labels, info['instances'])
    assert len(shapes) > 1


def test_target_scenes_are_rotated_and_inverted():
    """The target's digits are the source's drawn rotated by 90 degrees on a colour-inverted
    scene: same noise, place and colour (one random stream), each pixel ``255 - v`` with the
    ink turned a quarter; each object is the box its strokes span."""
    from sklearn.datasets import load_digits
    from tools.demo.dense_data import render_scene
    digit = load_digits().images[7]
    whole = dict(SCENES, digit=[20, 20])  # the digit fills the 20 x 20 canvas

    def scene(rotate, invert):
        return render_scene(np.random.RandomState(3), (20, 20), [(digit, 2)], whole,
                            rotate=rotate, invert=invert)

    plain, plain_labels, ((_, plain_mask), ) = scene(0, False)
    turned, labels, ((label, mask), ) = scene(1, True)
    assert label == 2 and np.array_equal(labels > 0, mask) and (labels[mask] == 3).all()
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # a filled box
    assert np.array_equal(np.rot90(plain_mask), mask)  # the strokes' box, turned
    # the noise alone (no digit): the same draw, inverted on the target
    noise = render_scene(np.random.RandomState(3), (20, 20), [], whole)[0]
    inverted = render_scene(np.random.RandomState(3), (20, 20), [], whole, 1, True)[0]
    assert np.array_equal(inverted, 255 - noise) and noise.max() < SCENES['noise']
    # on a black canvas: the inverted target is the source's ink, a quarter turn apart
    quiet = dict(whole, noise=1)
    ink = render_scene(np.random.RandomState(3), (20, 20), [(digit, 2)], quiet)[0]
    ink_turned = render_scene(np.random.RandomState(3), (20, 20), [(digit, 2)], quiet, 1, True)[0]
    assert (ink > 128).sum() > 40
    assert np.abs((255 - ink_turned).astype(int) - ink).max() > 128  # not the same ink
    assert np.abs((255 - ink_turned).astype(int) - np.rot90(ink)).max() <= 2  # bilinear rounding


def check_label_map(labels, instances):
    """Every COCO box is the exact extent of the label map's pixels of its class inside it, and
    the label map has no digit pixel outside the boxes."""
    covered = np.zeros(labels.shape, bool)
    assert instances
    for inst in instances:
        x1, y1, x2, y2 = (int(round(v)) for v in inst['bbox'])
        inside = labels[y1:y2, x1:x2] == inst['bbox_label'] + 1
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() \
            and inside[:, -1].any(), inst
        covered[y1:y2, x1:x2] = True
    assert not (labels[~covered] > 0).any()


def test_backbone_lr_reads_the_multiplier():
    """The lr column: the optimizer's lr times the config's ``backbone`` multiplier."""
    def lr(task, backbone, method):
        model = dense_demo.TASKS[task][0]
        return dense_demo.backbone_lr(Config.fromfile(dense_demo.CONFIG.format(model, backbone,
                                                                               method)))

    for task in dense_demo.TASKS:
        assert lr(task, 'swin-tiny', 'mona') == 2e-3
        assert lr(task, 'swin-tiny', 'full') == pytest.approx(2e-4)
        assert lr(task, 'swin-tiny', 'lorand') == pytest.approx(5e-3)
    # the table gives each task's lr where they differ
    rows = [dict(method='lora', backbone='vit-tiny', task=task, metric=50.0, seconds=1,
                 trainable=10, lr=lr_) for task, lr_ in (('seg', 2e-3), ('det', 1e-2))]
    assert dense_demo.markdown_table(rows)[2].endswith('| 10 | 2e-03 / 1e-02 |')
    assert dense_demo.markdown_table(rows[:1] + [dict(rows[1], lr=2e-3)])[2].endswith(
        '| 10 | 2e-03 |')


@pytest.fixture(scope='module')
def short_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('dense_demo')
    work, data = tmp / 'work', tmp / 'data'
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rows = dense_demo.main(SHORT + ['--work-dir', str(work), '--data-root', str(data)])
    return rows, work, out.getvalue()


def test_short_run_table_and_json(short_run):
    rows, work, printed = short_run
    assert [(r['backbone'], r['method'], r['task']) for r in rows] == [
        ('swin-tiny', 'linear', 'seg'), ('swin-tiny', 'lora', 'seg'),
        ('vit-tiny', 'linear', 'seg'), ('vit-tiny', 'lora', 'seg')]
    with open(work / dense_demo.RESULTS) as f:
        results = json.load(f)
    assert results['results'] == rows
    for backbone in ('swin-tiny', 'vit-tiny'):
        assert results['source'][backbone]['reused'] is False
        assert isinstance(results['source'][backbone]['mIoU'], float)
        assert (work / f'source_backbone_{backbone}.pth').is_file()
    assert results['environment']['threads'] == dense_demo.DEFAULT_THREADS
    swin_linear, swin_lora, vit_linear, vit_lora = rows
    assert swin_linear['trainable'] == vit_linear['trainable'] == 0
    # the frozen baseline trains no backbone weight; LoRA's learn at the heads' lr
    assert swin_linear['lr'] is vit_linear['lr'] is None
    assert swin_lora['lr'] == vit_lora['lr'] == 2e-3
    # rank 8 on q and v (C -> C) and on fc1 (C -> 2C) and fc2 (2C -> C) of the Swin's
    # 2 + 2 + 2 blocks of widths C = 32, 64, 128 (MLP ratio 2)
    def per_block(c):
        return 8 * (2 * (c + c) + (c + 2 * c) + (2 * c + c))

    assert swin_lora['trainable'] == sum(2 * per_block(c) for c in (32, 64, 128)) == 35_840
    # ... and of the ViT's 6 blocks of width 64
    assert vit_lora['trainable'] == 6 * per_block(64) == 30_720
    for row in rows:
        assert isinstance(row['metric'], float) and 0 <= row['metric'] <= 100, row
        assert row['seconds'] > 0
    table = printed[printed.index('Target task: digits 5-9'):].splitlines()
    assert table[1].split() == ['method', 'backbone', 'task', 'metric', 'value', 'trainable',
                                'params', 'lr', 'time', '(s)']
    for line, row in zip(table[2:6], rows):
        assert line.split()[:6] == [row['method'], row['backbone'], 'seg', 'mIoU', '(%)',
                                    f'{row["metric"]:.1f}']
    markdown = dense_demo.markdown_table(rows)
    assert markdown[5].startswith(f'| lora | vit-tiny | {vit_lora["metric"]:.1f} |')
    assert markdown[0].endswith('| trainable backbone params | their lr |')
    assert markdown[2].endswith('| 0 | - |') and markdown[5].endswith('| 30,720 | 2e-03 |')

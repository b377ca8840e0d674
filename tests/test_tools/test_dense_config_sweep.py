"""Every config of configs/dense (V-PETL's Swin table) and configs/dense/vit (plain ViT) through
tools/train.py and then tools/test.py, as a user runs them: the repository's files unchanged,
shrunk by --cfg-options (tiny backbones, small images, few proposals), on COCO, Pascal VOC
07+12 and ADE20K folders in the layouts the zoo's dataset configs name, images of different
sizes. Each config trains (an epoch, or two iterations for the 160k-iteration ADE20K
schedules), validates with the toolbox's metric (COCO bbox / segm mAP, VOC 11-point mAP,
mIoU) and writes a trainable-only checkpoint; tools/test.py on that checkpoint reproduces the
validation metric. A 2-process tools/dist_train.sh run trains a UperNet (SyncBN heads) on the
CPU.

The tools run through tests/_tool_sweep.py: one process calls each tool's main(argv) once per
config, as its command line does."""
import glob
import os

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

import vpetl_mm  # noqa: E402,F401  (registers the plugin for in-process builds)
from tests._dense_data import write_ade20k, write_coco, write_voc  # noqa: E402
from tests._tool_sweep import run_sweep  # noqa: E402
from tests.test_tools.test_first_run import ROOT, repo_layout, run  # noqa: E402
from tests.test_tools.test_toolbox_train import write_pretrained  # noqa: E402

pytestmark = pytest.mark.sweep

CONFIGS = sorted(os.path.relpath(p, ROOT) for p in
                 glob.glob(os.path.join(ROOT, 'configs', 'dense', '*.py')) +
                 glob.glob(os.path.join(ROOT, 'configs', 'dense', 'vit', '*.py')))
SWIN = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4])
SWIN_CHANNELS = [16, 32, 64, 128]
VIT = dict(embed_dims=32, num_heads=2, img_size=(32, 32))  # 12 layers stay
#: the validation metric each task's evaluator logs
METRIC = {'coco': 'coco/bbox_mAP', 'voc': 'pascal_voc/mAP', 'ade': 'mIoU'}


def task(config):
    name = os.path.basename(config)
    return 'coco' if name.endswith('_coco.py') else 'voc' if 'voc' in name else 'ade'


def is_vit(config):
    return os.path.dirname(config).endswith('vit')


def backbone_options(config):
    sizes = VIT if is_vit(config) else SWIN
    return [f'model.backbone.backbone.{k}={v}'.replace(' ', '') for k, v in sizes.items()]


def few_proposals(stages):
    """Mask R-CNN / Cascade R-CNN with a few proposals and sampled RoIs (``stages`` RoI
    heads); every box kept at test (an untrained detector's scores are below the zoo's 0.05, and
    CocoMetric reports nothing for no boxes)."""
    opts = ['model.train_cfg.rpn.sampler.num=32', 'model.train_cfg.rpn_proposal.nms_pre=200',
            'model.train_cfg.rpn_proposal.max_per_img=32', 'model.test_cfg.rpn.nms_pre=200',
            'model.test_cfg.rpn.max_per_img=32', 'model.test_cfg.rcnn.score_thr=0.0',
            'model.test_cfg.rcnn.max_per_img=20']
    if stages == 1:
        return opts + ['model.train_cfg.rcnn.sampler.num=16']
    return opts + [f'model.train_cfg.rcnn.{i}.sampler.num=16' for i in range(stages)]


def model_options(config):
    """Shrink the neck and heads to the tiny backbone's channels; few detection proposals."""
    if task(config) == 'coco' and is_vit(config):  # [MultiLevelNeck, FPN]
        return ['model.neck.0.in_channels=[32,32,32,32]'] + few_proposals(1)
    if task(config) == 'coco':
        return [f'model.neck.in_channels={SWIN_CHANNELS}'.replace(' ', '')] + few_proposals(3)
    if task(config) == 'voc':
        return [f'model.neck.in_channels={SWIN_CHANNELS[1:]}'.replace(' ', '')]
    channels, aux = ([32] * 4, 32) if is_vit(config) else (SWIN_CHANNELS, 64)
    opts = [f'model.decode_head.in_channels={channels}'.replace(' ', ''),
            'model.decode_head.channels=16', f'model.auxiliary_head.in_channels={aux}',
            'model.auxiliary_head.channels=16', 'model.data_preprocessor.size=(32,32)']
    if is_vit(config):  # MultiLevelNeck; sliding-window test of 32 px crops
        opts += ['model.neck.in_channels=[32,32,32,32]', 'model.neck.out_channels=32',
                 'model.test_cfg.crop_size=(32,32)', 'model.test_cfg.stride=(21,21)']
    return opts


def data_options(config):
    """Small images through each recipe's own pipelines; the schedule cut to one epoch (two
    iterations for ADE20K); two-image batches without workers."""
    eval_scale = {'coco': '(96,64)', 'voc': '(96,64)', 'ade': '(128,32)'}[task(config)]
    opts = [f'{loader}.dataset.pipeline.1.scale={eval_scale}'
            for loader in ('val_dataloader', 'test_dataloader')]
    train = 'train_dataloader.dataset.pipeline'
    if task(config) == 'coco' and not is_vit(config):  # the DETR-style multi-scale crop
        opts += [f'{train}.3.transforms.0.0.scales=[(96,64),(80,56)]',
                 f'{train}.3.transforms.1.0.scales=[(96,64)]',
                 f'{train}.3.transforms.1.1.crop_size=(40,56)',
                 f'{train}.3.transforms.1.2.scales=[(96,64)]']
    elif task(config) == 'coco':
        opts.append(f'{train}.2.scale=(96,64)')
    elif task(config) == 'voc':  # RepeatDataset(ConcatDataset([VOC2007, VOC2012]))
        opts += ['train_dataloader.dataset.times=1'] + [
            f'train_dataloader.dataset.dataset.datasets.{i}.pipeline.2.scale=(96,64)'
            for i in range(2)]
    else:
        opts += [f'{train}.2.scale=(128,32)', f'{train}.3.crop_size=(32,32)']
    if task(config) == 'ade':  # IterBasedTrainLoop
        opts += ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                 'default_hooks.checkpoint.interval=2']
    else:
        opts += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                 'default_hooks.checkpoint.interval=1']
    opts += [f'{loader}.num_workers=0' for loader in
             ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    return opts + ['train_dataloader.batch_size=2', 'val_dataloader.batch_size=1',
                   'test_dataloader.batch_size=1', 'default_hooks.logger.interval=1']


def options(config):
    name = os.path.basename(config)[:-3]
    return (backbone_options(config) + model_options(config) + data_options(config) +
            [f'work_dir=work_dirs/{name}'])


def checkpoint(repo, config):
    name = os.path.basename(config)[:-3]
    return repo / 'work_dirs' / name / ('iter_2.pth' if task(config) == 'ade' else 'epoch_1.pth')


@pytest.fixture(scope='module')
def dense_repo(tmp_path_factory):
    """The repository layout with small COCO, VOC 07+12 and ADE20K folders where the zoo's
    dataset configs look, and tiny 'pretrained' backbones at the configs' paths."""
    from mmengine.config import Config
    work = repo_layout(tmp_path_factory.mktemp('dense_sweep'))
    write_coco(str(work / 'data' / 'coco'))
    write_voc(str(work / 'data' / 'VOCdevkit'))
    write_ade20k(str(work / 'data' / 'ade' / 'ADEChallengeData2016'))
    written = set()
    for config in CONFIGS:
        cfg = Config.fromfile(os.path.join(ROOT, config))
        path = cfg.model.backbone.pretrained
        if path in written:
            continue
        inner = cfg.model.backbone.backbone.to_dict()
        inner.update(VIT if is_vit(config) else SWIN)
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        write_pretrained(cfg.default_scope, inner, work / path)
        written.add(path)
    return work


def test_every_dense_config_trains_and_tests(dense_repo):
    assert len(CONFIGS) == 45, CONFIGS  # 11 methods x 3 Swin recipes + 6 x 2 ViT recipes
    trained = run_sweep(dense_repo, 'tools/train.py',
                    {c: [c, '--cfg-options', *options(c)] for c in CONFIGS})
    tests = {}
    for config in CONFIGS:
        state = torch.load(checkpoint(dense_repo, config), map_location='cpu',
                           weights_only=True)
        assert state['meta']['peft'], config
        keys = list(state['state_dict'])
        assert keys and not any(k.startswith('data_preprocessor') for k in keys), config
        tests[config] = [config, str(checkpoint(dense_repo, config)), '--cfg-options',
                         *options(config)]
    tested = run_sweep(dense_repo, 'tools/test.py', tests)
    for config in CONFIGS:
        key = METRIC[task(config)]
        val, test = trained[config]['metrics'], tested[config]['metrics']
        assert key in val and key in test, (config, val, test)
        assert test[key] == val[key], (config, val, test)


def test_dist_train_dense_config(dense_repo):
    """tools/dist_train.sh CONFIG 2 on the CPU (gloo): Mona's UperNet keeps mmseg's SyncBN
    heads, which train as per-process BatchNorm; both processes finish, validate, and the
    checkpoint holds Mona's moved scales (initialised to 1e-6)."""
    config = 'configs/dense/upernet_swin-l-p4-w7_mona_8xb2-160k_ade20k-512x512.py'
    opts = options(config)[:-1] + ['work_dir=work_dirs/dist_mona']
    out = run(['bash', 'tools/dist_train.sh', config, '2', '--cfg-options', *opts],
              cwd=dense_repo)
    assert 'SyncBatchNorm runs on GPUs only' in out
    state = torch.load(dense_repo / 'work_dirs' / 'dist_mona' / 'iter_2.pth',
                       map_location='cpu', weights_only=True)['state_dict']
    scales = [v for k, v in state.items() if 'mona' in k and k.endswith('.gamma')]
    assert scales and any(not torch.allclose(v, torch.full_like(v, 1e-6)) for v in scales)
    assert 'mIoU' in out

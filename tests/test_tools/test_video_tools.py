"""The project's video configs (configs/video) through tools/train.py, tools/test.py and
tools/dist_train.sh, as a user runs them: the repository's files unchanged, the model and frames
shrunk by --cfg-options, mp4 videos of different sizes in the HMDB51 / Kinetics-400 layouts
(mmaction list files), decoded by the configs' own DecordInit pipelines, a 4-clip test; and every
method of the table through one training step of its own recognizer."""
import os
import sys

import pytest
import torch

pytest.importorskip('mmaction')
pytest.importorskip('decord')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import vpetl_mm  # noqa: E402,F401  (registers the plugin for in-process builds)
from tests._video_helpers import write_video  # noqa: E402
from tests.test_tools.test_first_run import ROOT, repo_layout, run  # noqa: E402

VIT = dict(img_size=32, patch_size=8, embed_dims=32, depth=12, num_heads=2, mlp_ratio=2)
SWIN = dict(arch=dict(embed_dims=16, depths=[2, 2, 18, 2], num_heads=[1, 2, 2, 4]),
            window_size=(2, 4, 4), drop_path_rate=0.1)
HEAD_IN = {'videomae-vit-b': 32, 'video-swin-b': 128}


def write_list(folder, list_file, n, classes=('brush_hair', 'cartwheel', 'catch'), seed=0):
    """``n`` videos as ``<class>/<name>.mp4`` under ``folder`` and an mmaction list file of
    ``<path> <label>`` lines; frame sizes differ."""
    lines = []
    for i in range(n):
        label = i % len(classes)
        name = f'{classes[label]}/{classes[label]}_{i}.mp4'
        os.makedirs(folder / classes[label], exist_ok=True)
        # sizes differ; landscape, as decord 0.6 mis-reads small portrait frames
        write_video(folder / name, [(48, 64), (64, 96), (48, 80)][i % 3], frames=16,
                    seed=seed + i)
        lines.append(f'{name} {label}\n')
    list_file.write_text(''.join(lines))


def write_pretrained(path, backbone_cfg):
    """A 'pretrained' checkpoint of the shrunk inner backbone, under ``backbone.`` keys as the
    mmaction releases keep them."""
    from mmengine.registry import MODELS
    init_default_scope('mmaction')
    torch.manual_seed(0)
    model = MODELS.build(backbone_cfg)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()}},
               path)


def shrink_options(backbone, epochs=1, recipe='vpetl'):
    """--cfg-options that shrink a configs/video config of ``backbone`` to a tiny model on
    32 px frames, 2-clip batches without workers. ``recipe``: 'vpetl' (V-PETL's 8x4x1
    pipelines) or 'mmaction' (MMAction2's Video Swin 32x2x1 pipelines of the
    ``*_k400-mmaction`` configs)."""
    sizes = VIT if backbone == 'videomae-vit-b' else SWIN
    opts = [f'model.backbone.backbone.{k}={v}' for k, v in sizes.items() if k != 'arch']
    if 'arch' in sizes:
        opts += [f'model.backbone.backbone.arch.{k}={v}'.replace(' ', '')
                 for k, v in sizes['arch'].items()]
    opts += [f'model.cls_head.in_channels={HEAD_IN[backbone]}',
             f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1',
             'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1']
    if recipe == 'vpetl':  # MultiScaleCrop, Resize
        opts += ['train_dataloader.dataset.pipeline.3.input_size=32',
                 'train_dataloader.dataset.pipeline.4.scale=(32,32)']
    else:  # Resize, RandomResizedCrop, Resize
        opts += ['train_dataloader.dataset.pipeline.3.scale=(-1,32)',
                 'train_dataloader.dataset.pipeline.5.scale=(32,32)']
    for loader in ('val_dataloader', 'test_dataloader'):  # Resize, CenterCrop / ThreeCrop
        opts += [f'{loader}.dataset.pipeline.3.scale=(-1,32)',
                 f'{loader}.dataset.pipeline.4.crop_size=32', f'{loader}.batch_size=2']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts.append(f'{loader}.num_workers=0')
    return opts + ['train_dataloader.batch_size=2']


def inner_backbone(backbone):
    """The shrunk inner backbone config of the project's video model file."""
    name = 'videomae-vit-b16' if backbone == 'videomae-vit-b' else 'video-swin-b'
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', '_base_', 'models', f'{name}.py'))
    inner = cfg.model.backbone.backbone.to_dict()
    inner.update({k: v for k, v in (VIT if backbone == 'videomae-vit-b' else SWIN).items()})
    return inner


@pytest.fixture(scope='module')
def hmdb51_repo(tmp_path_factory):
    """The repository layout with a small HMDB51 split-1 folder and both backbones'
    'pretrained' files at the paths the configs name."""
    work = repo_layout(tmp_path_factory.mktemp('video'))
    data = work / 'data' / 'hmdb51'
    write_list(data / 'videos', data / 'hmdb51_train_split_1_videos.txt', 6)
    write_list(data / 'videos', data / 'hmdb51_val_split_1_videos.txt', 4, seed=100)
    write_pretrained(str(work / 'pretrained' /
                         'vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.pth'),
                     inner_backbone('videomae-vit-b'))
    write_pretrained(str(work / 'pretrained' / 'swin_base_patch244_window877_kinetics400_22k.pth'),
                     inner_backbone('video-swin-b'))
    return work


def acc(output, mode):
    import re
    found = re.findall(rf'Epoch\({mode}\).*?acc/top1: ([\d.]+)', output)
    assert found, f'no {mode} accuracy in the output:\n{output[-3000:]}'
    return float(found[-1])


@pytest.mark.parametrize('config', ['videomae-vit-b_lora_hmdb51', 'video-swin-b_adaptformer_hmdb51',
                                    'videomae-vit-b_dyt_hmdb51'])
def test_train_then_test_video_config(hmdb51_repo, config):
    """tools/train.py on the project's config trains (the method's weights move), validates and
    writes a trainable-only checkpoint; tools/test.py (4 clips per video, the config's test
    pipeline) gives a metric from it."""
    backbone = config.split('_')[0]
    path = f'configs/video/{config}.py'
    opts = shrink_options(backbone)
    out = run([sys.executable, 'tools/train.py', path, '--cfg-options', *opts], cwd=hmdb51_repo)
    assert 'Trainable parameters' in out
    ckpt = hmdb51_repo / 'work_dirs' / config / 'epoch_1.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    method = config.split('_')[1]
    assert state['meta']['peft'][0][0]['type'] == {'lora': 'LoRA', 'adaptformer': 'AdaptFormer',
                                                   'dyt': 'DyT'}[method]
    keys = list(state['state_dict'])
    own = {'lora': '.lora_', 'adaptformer': '.adaptformer.', 'dyt': '.dyt.'}[method]
    assert keys and all(own in k or k.startswith('cls_head.') for k in keys), keys[:10]
    assert any(own in k for k in keys)
    val = acc(out, 'val')
    out = run([sys.executable, 'tools/test.py', path, str(ckpt), '--cfg-options', *opts],
              cwd=hmdb51_repo)
    assert 0 <= acc(out, 'test') <= 100
    assert 0 <= val <= 100
    if method == 'dyt':  # DyTHook logs the activation rate the test measured
        assert 'dyt' in out.lower() and 'rate' in out.lower()


def test_test_reproduces_validation_metric(hmdb51_repo):
    """With the test pipeline set to the validation one, tools/test.py on the trainable-only
    checkpoint reproduces the metric the training run logged."""
    path = 'configs/video/videomae-vit-b_bapat_hmdb51.py'
    opts = shrink_options('videomae-vit-b') + [
        'work_dir=work_dirs/bapat_repro']
    run([sys.executable, 'tools/train.py', path, '--cfg-options', *opts], cwd=hmdb51_repo)
    same = ['test_dataloader.dataset.pipeline.1.num_clips=1']  # the validation's one clip
    out_train = (hmdb51_repo / 'work_dirs' / 'bapat_repro')
    logs = sorted(out_train.glob('*/*.log'))
    trained = acc(logs[-1].read_text(), 'val')
    out = run([sys.executable, 'tools/test.py', path, str(out_train / 'epoch_1.pth'),
               '--cfg-options', *opts, *same], cwd=hmdb51_repo)
    assert acc(out, 'test') == trained


def test_dist_train_video_config(hmdb51_repo):
    """tools/dist_train.sh CONFIG 2 on the CPU (gloo): both processes train one epoch."""
    path = 'configs/video/videomae-vit-b_adapter_hmdb51.py'
    opts = shrink_options('videomae-vit-b') + ['work_dir=work_dirs/dist_adapter']
    out = run(['bash', 'tools/dist_train.sh', path, '2', '--cfg-options', *opts],
              cwd=hmdb51_repo)
    ckpt = hmdb51_repo / 'work_dirs' / 'dist_adapter' / 'epoch_1.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    ups = [v for k, v in state.items() if '.adapter.up.weight' in k]
    assert ups and any(v.abs().sum() > 0 for v in ups)  # Adapter's up starts at zero
    assert 'Epoch(val)' in out


TABLE = sorted(p[:-3] for p in os.listdir(os.path.join(ROOT, 'configs', 'video'))
               if p.endswith('_hmdb51.py'))


@pytest.mark.parametrize('config', TABLE)
def test_every_video_method_trains_a_step(config):
    """Each method of the video table, in its own config's recognizer (shrunk), takes a
    training step: the loss is finite, the frozen backbone weights do not move and the
    method's do."""
    from mmaction.structures import ActionDataSample
    from mmengine.optim import OptimWrapper
    from mmengine.registry import MODELS

    from vpetl_mm.engine.hooks import add_dyt_rate_loss
    backbone = config.split('_')[0]
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'video', f'{config}.py'))
    cfg.model.backbone.backbone = inner_backbone(backbone)
    cfg.model.backbone.pretrained = None
    cfg.model.cls_head.in_channels = HEAD_IN[backbone]
    cfg.model.cls_head.num_classes = 3
    init_default_scope('mmaction')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    add_dyt_rate_loss(model)  # what the configs' DyTHook does (no-op without DyT)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if not p.requires_grad}
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                         lr=0.5))
    g = torch.Generator().manual_seed(1)
    data = dict(inputs=[torch.randint(0, 256, (1, 3, 8, 32, 32), generator=g,
                                      dtype=torch.uint8) for _ in range(2)],
                data_samples=[ActionDataSample().set_gt_label(i) for i in range(2)])
    model.train()
    for _ in range(2):  # zero-initialised branches move only after their partners did
        losses = model.train_step(data, optim)
    assert all(torch.isfinite(v).all() for v in losses.values())
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in frozen.items())
    moved = [n for n, v in trainable.items() if not torch.equal(after[n], v)]
    backbone_moved = [n for n in moved if n.startswith('backbone.')]
    if '_linear_' in config:
        assert not [n for n in trainable if n.startswith('backbone.')]
    else:
        assert backbone_moved, f'{config}: no backbone weight of the method moved'

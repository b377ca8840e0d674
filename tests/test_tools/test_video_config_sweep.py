"""Every config of configs/video through tools/train.py and then tools/test.py, as a user runs
them: the repository's files unchanged, shrunk by --cfg-options (tiny backbones, 32 px frames),
on mp4 videos of different sizes in the Kinetics-400, Something-Something V2 and HMDB51 layouts
that the configs name. Each config trains an epoch, validates and writes a trainable-only
checkpoint; tools/test.py on that checkpoint reproduces the validation metric where the
config's test pipeline is its validation pipeline with more clips (V-PETL's recipe, run with
one clip), and runs its own 4-clip x 3-crop test otherwise (MMAction2's Video Swin recipe).

The tools run through tests/_tool_sweep.py: one process calls each tool's main(argv) once per
config, as its command line does (the per-config interpreter start and toolbox imports would
cost more than the runs themselves; test_video_tools.py runs the tools as separate commands)."""
import os

import pytest
import torch

pytest.importorskip('mmaction')
pytest.importorskip('decord')
from tests._tool_sweep import run_sweep  # noqa: E402
from tests.test_tools.test_first_run import ROOT, repo_layout  # noqa: E402
from tests.test_tools.test_video_tools import (inner_backbone, shrink_options,  # noqa: E402
                                               write_list, write_pretrained)

CONFIGS = sorted(p[:-3] for p in os.listdir(os.path.join(ROOT, 'configs', 'video'))
                 if p.endswith('.py'))
# The folders and list files the dataset bases name: (videos of the training list, training
# list, videos of the validation list, validation list).
LAYOUTS = {
    'k400': ('kinetics400/videos_train', 'kinetics400/kinetics400_train_list_videos.txt',
             'kinetics400/videos_val', 'kinetics400/kinetics400_val_list_videos.txt'),
    'sthv2': ('sthv2/videos', 'sthv2/sthv2_train_list_videos.txt',
              'sthv2/videos', 'sthv2/sthv2_val_list_videos.txt'),
    'hmdb51': ('hmdb51/videos', 'hmdb51/hmdb51_train_split_1_videos.txt',
               'hmdb51/videos', 'hmdb51/hmdb51_val_split_1_videos.txt'),
}
pytestmark = pytest.mark.sweep

PRETRAINED = {'videomae-vit-b': 'vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.pth',
              'video-swin-b': 'swin_base_patch244_window877_kinetics400_22k.pth'}


def recipe(config):
    return 'mmaction' if config.endswith('_k400-mmaction') else 'vpetl'


def options(config):
    """The --cfg-options of ``config``'s sweep run (its own work dir)."""
    backbone = config.split('_')[0]
    return shrink_options(backbone, recipe=recipe(config)) + [f'work_dir=work_dirs/{config}']


@pytest.fixture(scope='module')
def video_repo(tmp_path_factory):
    """The repository layout with the three datasets' folders (two training and two validation
    videos each) and both backbones' 'pretrained' files where the configs look for them."""
    work = repo_layout(tmp_path_factory.mktemp('video_sweep'))
    for seed, (train_dir, train_list, val_dir, val_list) in enumerate(LAYOUTS.values()):
        data = work / 'data'
        write_list(data / train_dir, data / train_list, 2, seed=10 * seed)
        write_list(data / val_dir, data / val_list, 2, seed=10 * seed + 100)
    for backbone, name in PRETRAINED.items():
        write_pretrained(str(work / 'pretrained' / name), inner_backbone(backbone))
    return work


def test_every_video_config_trains_and_tests(video_repo):
    assert len(CONFIGS) == 77
    trained = run_sweep(video_repo, 'tools/train.py',
                    {c: [f'configs/video/{c}.py', '--cfg-options', *options(c)]
                     for c in CONFIGS})
    backbone_keys_of = {b: set(torch.load(video_repo / 'pretrained' / name,
                                          weights_only=True)['state_dict'])
                        for b, name in PRETRAINED.items()}
    tests = {}
    for config in CONFIGS:
        ckpt = video_repo / 'work_dirs' / config / 'epoch_1.pth'
        state = torch.load(ckpt, map_location='cpu', weights_only=True)
        method = config.split('_')[1]
        assert state['meta']['peft'], config
        backbone_keys = [k for k in state['state_dict'] if k.startswith('backbone.')]
        pretrained = backbone_keys_of[config.split('_')[0]]
        if method == 'linear':
            assert not backbone_keys, (config, backbone_keys[:5])
        elif method == 'bitfit':  # trainable-only: the biases, and the buffers of the modules
            # that own one (Swin's attention keeps its position index next to its bias table)
            assert backbone_keys and all('bias' in k or k.endswith('_index')
                                         for k in backbone_keys), config
        elif method != 'full':  # trainable-only: the method's own weights, no frozen ones
            assert backbone_keys and not set(backbone_keys) & pretrained, config
        argv = [f'configs/video/{config}.py', str(ckpt), '--cfg-options', *options(config)]
        if recipe(config) == 'vpetl':
            argv.append('test_dataloader.dataset.pipeline.1.num_clips=1')
        tests[config] = argv
    tested = run_sweep(video_repo, 'tools/test.py', tests)
    for config in CONFIGS:
        val, test = trained[config]['metrics'], tested[config]['metrics']
        assert 0 <= val['acc/top1'] <= 1 and 0 <= test['acc/top1'] <= 1, (config, val, test)
        if recipe(config) == 'vpetl':
            assert test['acc/top1'] == val['acc/top1'], (config, val, test)

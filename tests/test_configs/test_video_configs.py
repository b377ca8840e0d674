"""The video method table (configs/video: V-PETL's video methods plus Mona, DyT and DTL on the
VideoMAE ViT-B and Video Swin-B, Kinetics-400 / SSv2 / HMDB51) builds the recognizers it
describes with the published counts, and the video checkpoints it names load into its
backbones."""
import copy
import glob
import os.path as osp

import pytest

pytest.importorskip('mmaction')
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.checks import build_on_meta  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'video', '*.py')))
BACKBONES = ('videomae-vit-b', 'video-swin-b')
METHODS = ('linear', 'full', 'adaptformer', 'prefix', 'bapat', 'lora', 'bitfit', 'adapter',
           'mona', 'dyt', 'dtl')
DATASETS = {'k400': 400, 'sthv2': 174, 'hmdb51': 51}  # dataset -> classes
# trainable backbone parameters (VideoMAE ViT-B/16, Video Swin-B), 8 frames
COUNTS = {
    'linear': (0, 0), 'full': (86227200, 87638984), 'adaptformer': (1189632, 1553664),
    'prefix': (1880832, 2456064), 'bapat': (2093184, 6201088), 'lora': (589824, 770048),
    'bitfit': (93696, 1090376), 'adapter': (1189632, 1553664), 'dyt': (1198860, 1565720),
    'dtl': (36864, 90112), 'mona': (2684928, 3667456),
}
# V-PETL Bench's published video counts (its README table); ours must be within 3% of them or
# the config's header must say why not
VPETL = {('adaptformer', 'videomae-vit-b'): 1.19e6, ('adaptformer', 'video-swin-b'): 1.55e6,
         ('bapat', 'videomae-vit-b'): 2.06e6, ('bapat', 'video-swin-b'): 6.18e6,
         ('lora', 'video-swin-b'): 0.75e6, ('bitfit', 'video-swin-b'): 1.09e6,
         ('prefix', 'video-swin-b'): 6.37e6}


def parts(path):
    backbone, method, dataset = osp.basename(path)[:-3].split('_')
    return backbone, method, dataset


def test_video_table_is_complete_and_generated():
    """Every backbone x method x dataset of the table (plus MMAction2's Video Swin recipe on
    Kinetics-400) is committed, and each file is what tools/misc/gen_video_configs.py writes."""
    from tools.misc import gen_video_configs
    expected = {f'{b}_{m}_{d}.py' for b in BACKBONES for m in METHODS for d in DATASETS}
    expected |= {f'video-swin-b_{m}_k400-mmaction.py' for m in METHODS}
    assert {osp.basename(p) for p in CONFIGS} == expected
    assert gen_video_configs.main(['--check']) == 0, \
        'configs/video is stale: run python tools/misc/gen_video_configs.py'


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_video_config_recipe(path):
    cfg = Config.fromfile(path)
    backbone, method, dataset = parts(path)
    assert cfg.default_scope == 'mmaction'
    assert cfg.model.type == 'Recognizer3D'
    assert cfg.model.backbone.type == 'vpetl_mm.PEFTBackbone'
    assert cfg.model.backbone.backbone.type == (
        'SwinTransformer3D' if backbone == 'video-swin-b' else 'VisionTransformer')
    assert cfg.model.cls_head.num_classes == DATASETS[dataset.split('-')[0]]
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'vpetl_mm.TrainableCheckpointHook' in hooks and 'vpetl_mm.DyTHook' in hooks
    sample = cfg.train_pipeline[1]
    if dataset == 'k400-mmaction':  # MMAction2's Video Swin recipe
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
        assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
        assert cfg.train_cfg.max_epochs == 30
        assert (sample.clip_len, sample.frame_interval) == (32, 2)
        assert 'Flip' in [t['type'] for t in cfg.train_pipeline]
        assert [t['type'] for t in cfg.test_pipeline][4] == 'ThreeCrop'
        assert ('lr_mult' in str(cfg.optim_wrapper.get('paramwise_cfg', {}))) == (
            method == 'full')
    else:  # V-PETL's
        assert cfg.optim_wrapper.optimizer.type == 'SGD'
        assert cfg.optim_wrapper.optimizer.weight_decay == 0
        assert cfg.train_cfg.max_epochs == 90
        assert (sample.clip_len, sample.frame_interval) == (8, 4)
        assert 'Flip' not in [t['type'] for t in cfg.train_pipeline]
    root = {'k400': 'data/kinetics400/', 'sthv2': 'data/sthv2/',
            'hmdb51': 'data/hmdb51/'}[dataset.split('-')[0]]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        data = cfg[loader].dataset
        assert data.type == 'VideoDataset' and data.ann_file.startswith(root)
        assert data.data_prefix.video.startswith(root)
    assert 'train' in cfg.train_dataloader.dataset.ann_file
    assert 'val' in cfg.test_dataloader.dataset.ann_file
    assert cfg.test_dataloader.dataset.pipeline[1].num_clips == 4


@pytest.mark.parametrize('backbone', BACKBONES)
@pytest.mark.parametrize('method', METHODS)
def test_video_config_counts(backbone, method):
    """The trainable backbone parameters of each (backbone, method), built on the meta device
    from the config; every dataset's config carries the same backbone; V-PETL's published
    counts are met within 3%, or the header says why not."""
    paths = [p for p in CONFIGS if parts(p)[:2] == (backbone, method)]
    cfgs = [Config.fromfile(p) for p in paths]
    assert all(c.model.backbone == cfgs[0].model.backbone for c in cfgs)
    init_default_scope('mmaction')
    from mmengine.registry import MODELS
    model = build_on_meta(MODELS, dict(cfgs[0].model.backbone.to_dict(), pretrained=None))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = COUNTS[method][BACKBONES.index(backbone)]
    assert trainable == expected
    header = open(paths[0]).read().split('_base_')[0]
    assert f'Trainable backbone parameters: {expected:,}.' in header.replace('\n# ', ' ')
    published = VPETL.get((method, backbone))
    if published is not None and abs(trainable - published) > 0.03 * published:
        assert f'V-PETL reports {published / 1e6:.2f}M' in header.replace('\n# ', ' '), \
            f'{paths[0]}: {trainable:,} against V-PETL\'s {published:,.0f}, unexplained'


def _save(state_dict, path, prefix='backbone.'):
    torch.save({'state_dict': {prefix + k: v for k, v in state_dict.items()}}, path)


def _vit(num_frames, **kw):
    return dict(type='VisionTransformer', img_size=32, patch_size=8, embed_dims=32, depth=1,
                num_heads=2, mlp_ratio=2, num_frames=num_frames, tubelet_size=2,
                qkv_bias=True, init_cfg=None, **kw)


def test_videomae_checkpoint_of_other_frame_count(tmp_path):
    """A 16-frame VideoMAE checkpoint loads into an 8-frame backbone: every weight is taken, the
    sinusoidal position table is the backbone's own (the first rows of the checkpoint's)."""
    init_default_scope('mmaction')
    from mmengine.registry import MODELS
    torch.manual_seed(0)
    long = MODELS.build(_vit(16))
    for p in long.parameters():
        p.data.normal_(0, 0.05)
    _save(long.state_dict(), tmp_path / 'videomae.pth')
    short = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=_vit(8),
                              pretrained=str(tmp_path / 'videomae.pth'),
                              pretrained_prefix='backbone.', method=dict(type='LinearProbe')))
    own = short.state_dict()
    assert own['pos_embed'].shape[1] == long.pos_embed.shape[1] // 2
    torch.testing.assert_close(own['pos_embed'], long.pos_embed[:, :own['pos_embed'].shape[1]])
    for key, value in long.state_dict().items():
        if key != 'pos_embed':
            assert torch.equal(own[key], value), key


def test_learned_position_table_of_other_length_raises(tmp_path):
    init_default_scope('mmaction')
    from mmengine.registry import MODELS
    long = MODELS.build(_vit(16, use_learnable_pos_emb=True))
    _save(long.state_dict(), tmp_path / 'learned.pth')
    with pytest.raises(ValueError, match='pos_embed.*num_frames'):
        MODELS.build(dict(type='vpetl_mm.PEFTBackbone',
                          backbone=_vit(8, use_learnable_pos_emb=True),
                          pretrained=str(tmp_path / 'learned.pth'),
                          pretrained_prefix='backbone.', method=dict(type='LinearProbe')))


def test_video_swin_checkpoint_in_mmaction_0x_layout(tmp_path):
    """The Video Swin release names the output norm ``norm``; mmaction 1.x calls it ``norm3``
    (``norm{last out index}``): the checkpoint loads strictly, the norm included."""
    init_default_scope('mmaction')
    from mmengine.registry import MODELS
    cfg = dict(type='SwinTransformer3D', arch=dict(embed_dims=16, depths=[2, 2],
                                                   num_heads=[2, 2]),
               pretrained2d=False, patch_size=(2, 4, 4), window_size=(2, 4, 4),
               out_indices=(1, ), init_cfg=None)
    plain = MODELS.build(copy.deepcopy(cfg))
    for p in plain.parameters():
        p.data.uniform_(-0.1, 0.1)
    old = {('norm.' + k[6:] if k.startswith('norm1.') else k): v
           for k, v in plain.state_dict().items()}
    assert 'norm.weight' in old and 'norm1.weight' not in old
    _save(old, tmp_path / 'swin.pth')
    wrapped = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(cfg),
                                pretrained=str(tmp_path / 'swin.pth'),
                                pretrained_prefix='backbone.',
                                method=dict(type='LinearProbe')))
    assert torch.equal(wrapped.norm1.weight, plain.norm1.weight)


@pytest.mark.parametrize('path', [p for p in CONFIGS if parts(p)[1] == 'lora'
                                  and parts(p)[2] in ('hmdb51', 'k400-mmaction')],
                         ids=osp.basename)
def test_video_pipelines_build_and_crop(path):
    """Every transform of the pipelines is registered with these arguments, and the train crop
    turns frames of any size into 8 x 224 x 224 clips."""
    import numpy as np
    from mmaction.registry import TRANSFORMS
    from mmengine.dataset import Compose
    cfg = Config.fromfile(path)
    init_default_scope('mmaction')
    for pipeline in (cfg.train_pipeline, cfg.val_pipeline, cfg.test_pipeline):
        [TRANSFORMS.build(t) for t in pipeline]
    crop = Compose([TRANSFORMS.build(t) for t in cfg.train_pipeline[3:-1]])
    frames = [np.zeros((240, 320, 3), np.uint8) for _ in range(8)]
    out = crop(dict(imgs=frames, img_shape=(240, 320), ori_shape=(240, 320), num_clips=1,
                    clip_len=8, modality='RGB'))
    assert out['imgs'].shape == (1, 3, 8, 224, 224)


@pytest.mark.parametrize('name, classes, root', [
    ('k400_vpetl-8x4x1', 400, 'data/kinetics400/'), ('sthv2_vpetl-8x4x1', 174, 'data/sthv2/'),
    ('hmdb51_vpetl-8x4x1', 51, 'data/hmdb51/'), ('ucf101_vpetl-8x4x1', 101, 'data/ucf101/'),
    ('k400_swin-32x2x1', 400, 'data/kinetics400/')])
def test_video_dataset_files(name, classes, root):
    """The dataset files read mmaction's list files from the folders its tools/data scripts
    write, train from the train list and evaluate on the val list."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'datasets', f'{name}.py'))
    assert cfg.num_classes == classes
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val'),
                          ('test_dataloader', 'val')):
        data = cfg[loader].dataset
        assert data.type == 'VideoDataset'
        assert data.ann_file.startswith(root) and f'_{split}_' in data.ann_file
        assert data.ann_file.endswith('_videos.txt')
        assert data.data_prefix.video.startswith(root)
    assert cfg.test_dataloader.dataset.pipeline[1].num_clips == 4

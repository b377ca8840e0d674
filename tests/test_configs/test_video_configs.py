"""The video configs (BAPAT on HMDB51 / SSv2 with VideoMAE ViT-B and Video Swin-B) build the
recognizers they describe, and the video checkpoints they name load into their backbones."""
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
# (family, dataset) -> (trainable backbone parameters, classes)
EXPECTED = {
    ('vit-b-p16', 'hmdb51'): (2093184, 51),
    ('vit-b-p16', 'sthv2'): (2093184, 174),
    ('swin-b-p244-w877', 'hmdb51'): (6201088, 51),
    ('swin-b-p244-w877', 'sthv2'): (6201088, 174),
}


def test_all_video_configs_listed():
    names = {(osp.basename(p).split('_')[0], osp.basename(p)[:-3].split('_')[-1])
             for p in CONFIGS}
    assert names == set(EXPECTED)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_video_config_builds(path):
    cfg = Config.fromfile(path)
    name = osp.basename(path)[:-3]
    params, classes = EXPECTED[(name.split('_')[0], name.split('_')[-1])]
    assert cfg.default_scope == 'mmaction'
    assert [m['type'] for m in cfg.model.backbone.method] == ['AdaptFormer', 'PATT']
    assert cfg.model.cls_head.num_classes == classes
    assert cfg.optim_wrapper.optimizer.type == 'SGD'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0
    assert cfg.train_cfg.max_epochs == 90
    sample = cfg.train_pipeline[1]
    assert (sample.clip_len, sample.frame_interval) == (8, 4)
    assert 'Flip' not in [t['type'] for t in cfg.train_pipeline]
    dataset = name.split('_')[-1]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        data = cfg[loader].dataset
        assert data.type == 'VideoDataset' and data.ann_file.startswith(f'data/{dataset}/')
        assert data.data_prefix.video == f'data/{dataset}/videos'
    assert 'train' in cfg.train_dataloader.dataset.ann_file
    assert 'val' in cfg.test_dataloader.dataset.ann_file
    assert cfg.test_dataloader.dataset.pipeline[1].num_clips == 4
    init_default_scope('mmaction')
    from mmengine.registry import MODELS
    model = build_on_meta(MODELS, dict(cfg.model.backbone.to_dict(), pretrained=None))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == params


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


@pytest.mark.parametrize('path', CONFIGS[:2], ids=osp.basename)
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

"""V-PETL's dense table (configs/dense, from tools/misc/gen_dense_configs.py): eleven methods on
the authors' three recipes (Cascade Mask R-CNN + Swin-B on COCO, RetinaNet + Swin-L on Pascal
VOC, UperNet + Swin-L on ADE20K).

Each config is generated, carries the vpetl_mm runtime and the authors' recipe, and states the
trainable backbone count its Swin gives (built on the meta device), with V-PETL's printed count
and the reason where they differ; each whole model, shrunk to a tiny Swin by config changes,
trains on batches of images of different sizes (frozen weights still, the method's moving); the
weights route of the recipe headers (tools/model_converters/swin2mmpretrain.py on the official
release) loads into the dense Swin and computes what timm does."""
import glob
import os.path as osp

import pytest

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

from tests.test_models.checks import build_on_meta  # noqa: E402
from tools.misc import gen_dense_configs  # noqa: E402
from vpetl_mm.engine.runtime import PEFT_HOOKS  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'dense', '*.py')))
NAMES = {'coco': 'cascade-mask-rcnn_swin-b-p4-w7_{}_fpn_ms-crop-3x_coco.py',
         'voc': 'retinanet_swin-l-p4-w7_{}_fpn_1x_voc0712.py',
         'ade': 'upernet_swin-l-p4-w7_{}_8xb2-160k_ade20k-512x512.py'}
SCOPES = {'coco': 'mmdet', 'voc': 'mmdet', 'ade': 'mmseg'}
# method -> (type, trainable backbone parameters on COCO's Swin-B (4 outputs), VOC's Swin-L
# (outputs 1-3), ADE20K's Swin-L (4 outputs)): the output norms count for the methods that
# train them (Full, BitFit, LN-tune, E3VA)
METHODS = {
    'full': ('FullFineTune', 86745016, 194997780, 194998164),
    'linear': ('LinearProbe', 0, 0, 0),
    'bitfit': ('BitFit', 201656, 302292, 302484),
    'lntune': ('LNTune', 59392, 88704, 89088),
    'partial-1': ('PartialK', 12601632, 28339632, 28339632),
    'adapter': ('Adapter', 3107328, 4659456, 4659456),
    'lora': ('LoRA', 3080192, 4620288, 4620288),
    'adaptformer': ('AdaptFormer', 1553664, 2329728, 2329728),
    'lorand': ('LoRand', 1203456, 1799040, 1799040),
    'e3va': ('E3VA', 1207296, 1804416, 1804800),
    'mona': ('Mona', 3667456, 5267712, 5267712),
}
# V-PETL Bench's dense tables (README), trainable parameters in M: (Swin-B, Swin-L)
VPETL = {'full': ('86.75', '198.58'), 'linear': ('0.00', '0.00'), 'bitfit': ('0.20', '0.30'),
         'lntune': ('0.06', '0.09'), 'partial-1': ('12.60', '28.34'),
         'adapter': ('3.11', '4.66'), 'lora': ('3.03', '4.57'), 'adaptformer': ('3.11', '4.66'),
         'lorand': ('1.20', '1.31'), 'e3va': ('1.20', '1.79'), 'mona': ('4.16', '5.08')}
# the authors' ADE20K runs (Leiyi-Hu/mona): (lr, drop path, head norm); LoRand and E3VA (no
# published config) take Mona's
ADE = {'full': (6e-5, 0.3, 'SyncBN'), 'linear': (6e-5, 0.3, 'SyncBN'),
       'mona': (3e-4, 0.2, 'SyncBN'), 'lorand': (3e-4, 0.2, 'SyncBN'),
       'e3va': (3e-4, 0.2, 'SyncBN')}
ADE_BASELINE = (6e-5, 0.3, 'BN')  # BitFit, LN-tune, Partial-1, Adapter, LoRA, AdaptFormer


def parts(path):
    """``(recipe, method)`` of a config file name."""
    name = osp.basename(path)
    for recipe, pattern in NAMES.items():
        head, tail = pattern.split('{}')
        if name.startswith(head) and name.endswith(tail):
            return recipe, name[len(head):-len(tail)]
    raise ValueError(f'{name} is no recipe of the dense table')


def test_dense_table_is_complete_and_generated():
    """Every recipe x method is committed (the hand-written Mask R-CNN / window-12 configs the
    table superseded are gone), and each file is what the generator writes."""
    expected = {NAMES[r].format(m) for r in NAMES for m in METHODS}
    assert {osp.basename(p) for p in CONFIGS} == expected
    assert gen_dense_configs.main(['--check']) == 0, \
        'configs/dense is stale: run python tools/misc/gen_dense_configs.py'


def check_optimizer(cfg, lr, weight_decay):
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', lr, weight_decay)
    assert tuple(optimizer.betas) == (0.9, 0.999)
    keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    for key in ('absolute_pos_embed', 'relative_position_bias_table', 'norm'):
        assert keys[key].decay_mult == 0.0


def check_coco(cfg, method):
    assert cfg.model.type == 'CascadeRCNN'
    assert cfg.model.backbone.backbone.drop_path_rate == 0.3
    assert cfg.model.neck.in_channels == [128, 256, 512, 1024]
    heads = cfg.model.roi_head.bbox_head
    assert [h.type for h in heads] == ['ConvFCBBoxHead'] * 3
    for head, stds in zip(heads, ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                                  [0.033, 0.033, 0.067, 0.067])):
        assert (head.num_shared_convs, head.num_shared_fcs, head.num_classes) == (4, 1, 80)
        assert head.norm_cfg.type == 'SyncBN' and head.bbox_coder.target_stds == stds
        assert head.reg_decoded_bbox and not head.reg_class_agnostic
        assert (head.loss_bbox.type, head.loss_bbox.loss_weight) == ('GIoULoss', 10.0)
    assert cfg.model.roi_head.mask_head.num_convs == 4
    assert 'RandomChoice' in [t['type'] for t in cfg.train_pipeline]
    assert cfg.train_dataloader.dataset.pipeline == cfg.train_pipeline
    assert cfg.train_cfg.max_epochs == 36
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.end, warmup.start_factor) == ('LinearLR', 500, 0.001)
    assert (steps.type, steps.milestones, steps.end) == ('MultiStepLR', [27, 33], 36)
    assert set(cfg.val_evaluator.metric) == {'bbox', 'segm'}
    check_optimizer(cfg, 1e-4, 0.05)


def check_voc(cfg, method):
    assert cfg.model.type == 'RetinaNet' and cfg.model.bbox_head.num_classes == 20
    inner = cfg.model.backbone.backbone
    assert inner.drop_path_rate == 0.2 and tuple(inner.out_indices) == (1, 2, 3)
    neck = cfg.model.neck
    assert (neck.in_channels, neck.start_level, neck.add_extra_convs, neck.num_outs) == (
        [384, 768, 1536], 0, 'on_input', 5)
    data = cfg.train_dataloader.dataset
    assert (data.type, data.times, data.dataset.type) == ('RepeatDataset', 3, 'ConcatDataset')
    assert [d.ann_file for d in data.dataset.datasets] == [
        'VOC2007/ImageSets/Main/trainval.txt', 'VOC2012/ImageSets/Main/trainval.txt']
    assert cfg.test_dataloader.dataset.ann_file == 'VOC2007/ImageSets/Main/test.txt'
    assert (cfg.val_evaluator.type, cfg.val_evaluator.eval_mode) == ('VOCMetric', '11points')
    assert cfg.train_dataloader.batch_size == 1 and cfg.auto_scale_lr.base_batch_size == 2
    assert cfg.train_cfg.max_epochs == 4
    assert [(s.type, s.milestones) for s in cfg.param_scheduler] == [('MultiStepLR', [3])]
    check_optimizer(cfg, 1e-4, 0.05)


def check_ade(cfg, method):
    assert cfg.model.type == 'EncoderDecoder' and cfg.model.get('pretrained') is None
    lr, drop_path, norm = ADE.get(method, ADE_BASELINE)
    assert cfg.model.backbone.backbone.drop_path_rate == drop_path
    assert cfg.model.backbone.backbone.window_size == 7
    assert cfg.model.decode_head.in_channels == [192, 384, 768, 1536]
    assert cfg.model.decode_head.norm_cfg.type == cfg.model.auxiliary_head.norm_cfg.type == norm
    assert cfg.model.decode_head.num_classes == 150
    assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size == 2
    assert cfg.model.data_preprocessor.size == (512, 512)
    check_optimizer(cfg, lr, 0.01)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_dense_config_recipe(path):
    recipe, method = parts(path)
    cfg = Config.fromfile(path)
    assert cfg.default_scope == SCOPES[recipe]
    backbone = cfg.model.backbone
    assert backbone.type == 'vpetl_mm.PEFTBackbone'
    assert backbone.method.type == METHODS[method][0]
    swin_l = recipe != 'coco'
    assert backbone.pretrained == f'pretrained/swin-{"l" if swin_l else "b"}_in22k.pth'
    inner = backbone.backbone
    assert inner.type == 'SwinTransformer' and inner.init_cfg is None
    assert inner.embed_dims == (192 if swin_l else 128) and inner.window_size == 7
    assert inner.get('frozen_stages', -1) == -1  # the method alone decides what trains
    assert {t for t, _ in PEFT_HOOKS} <= {h.type for h in cfg.custom_hooks}
    assert cfg.default_hooks.checkpoint.backend_args.backend == 'vpetl_atomic'
    {'coco': check_coco, 'voc': check_voc, 'ade': check_ade}[recipe](cfg, method)


@pytest.mark.parametrize('recipe', NAMES)
@pytest.mark.parametrize('method', METHODS)
def test_dense_config_counts(recipe, method):
    """The trainable backbone parameters of the config's Swin (meta device), as its header
    states; where V-PETL prints another count (to two decimals in M), the header says so and
    why."""
    path = osp.join(ROOT, 'configs', 'dense', NAMES[recipe].format(method))
    cfg = Config.fromfile(path)
    init_default_scope(SCOPES[recipe])
    built = build_on_meta(MODELS, dict(cfg.model.backbone.to_dict(), pretrained=None))
    trainable = sum(p.numel() for p in built.parameters() if p.requires_grad)
    expected = METHODS[method][1 + list(NAMES).index(recipe)]
    assert trainable == expected
    header = open(path).read().split('\n_base_ = ')[0].replace('\n# ', ' ')
    assert f'Trainable backbone parameters: {expected:,}.' in header
    printed = VPETL[method][0 if recipe == 'coco' else 1]
    if f'{trainable / 1e6:.2f}' != printed:
        arch = 'Swin-B' if recipe == 'coco' else 'Swin-L'
        reason = header.split(f'V-PETL reports {printed}M for {arch}. ')
        assert len(reason) == 2 and len(reason[1]) > 40, \
            f'{path}: {trainable:,} against V-PETL\'s {printed}M, unexplained'


def _syncbn_to_bn(node):
    """``node`` with every SyncBN config replaced by BN (one process, no process group)."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            _syncbn_to_bn(value)
    elif isinstance(node, list):
        for value in node:
            _syncbn_to_bn(value)


TINY_SWIN = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4])


def tiny_model_cfg(path):
    """The config's model with a 16-wide Swin (2 blocks per stage, window 7 as the config's),
    necks and heads to match, fewer proposals and sampled RoIs, BN for SyncBN, no pretrained
    file."""
    recipe, _ = parts(path)
    model = Config.fromfile(path).model
    model.backbone.pretrained = None
    model.backbone.backbone.update(TINY_SWIN)
    _syncbn_to_bn(model)
    outs = model.backbone.backbone.out_indices
    channels = [16 << i for i in outs]
    if recipe == 'ade':
        model.decode_head.update(in_channels=channels, channels=16)
        model.auxiliary_head.update(in_channels=channels[2], channels=8)
        model.data_preprocessor.size = SEG_PAD
        return model
    model.neck.update(in_channels=channels, out_channels=16)
    if recipe == 'voc':
        model.bbox_head.update(in_channels=16, feat_channels=16)
        return model
    model.rpn_head.update(in_channels=16, feat_channels=16)
    model.roi_head.bbox_roi_extractor.out_channels = 16
    for head in model.roi_head.bbox_head:
        head.update(in_channels=16, conv_out_channels=16, fc_out_channels=32)
    model.roi_head.mask_roi_extractor.out_channels = 16
    model.roi_head.mask_head.update(in_channels=16, conv_out_channels=16)
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    for stage in model.train_cfg.rcnn:
        stage.sampler.num = 64
    return model


# two training batches, each of two images of different sizes (H, W); ADE20K pads its crops to
# SEG_PAD as the config's preprocessor pads to 512 x 512
BATCHES = (((64, 80), (72, 60)), ((96, 128), (80, 68)))
SEG_PAD = (96, 128)


def seg_batch(sizes, classes=150):
    """Images of ``sizes`` with ADE20K-style label maps, as mmseg's pipeline packs them."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(sum(h * w for h, w in sizes))
    inputs, samples = [], []
    for h, w in sizes:
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, classes, (1, h, w), generator=g))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def det_batch(sizes, classes, masks):
    """Images of ``sizes`` with two boxes (and masks) each (mmdet's demo inputs)."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(sum(h * w for h, w in sizes))
    return demo_mm_inputs(batch_size=len(sizes), image_shapes=[(3, h, w) for h, w in sizes],
                          num_items=[2] * len(sizes), num_classes=classes, with_mask=masks)


def batch(recipe, sizes):
    if recipe == 'ade':
        return seg_batch(sizes)
    return det_batch(sizes, 80 if recipe == 'coco' else 20, recipe == 'coco')


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_dense_model_trains_a_step(path):
    """The config's whole detector / segmentor, shrunk and initialised as the runner does, takes
    a training step on each of two batches of differently sized images through the toolbox's
    data preprocessor: finite losses, frozen weights bit-identical, a gradient reaching every
    parameter of the method and its weights moving (the heads' small initial weights leave some
    updates of early blocks below float32 resolution, so not every tensor need move)."""
    recipe, method = parts(path)
    init_default_scope(SCOPES[recipe])
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg(path))
    model.init_weights()  # as the runner does: the heads' priors (RetinaNet's 0.01 bias)
    tuned = {n: p.detach().clone() for n, p in model.backbone.named_parameters()
             if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert bool(tuned) == (method != 'linear') and bool(frozen) == (method != 'full')
    reached = set()
    for name, p in model.backbone.named_parameters():
        if p.requires_grad:
            p.register_hook(lambda grad, name=name: reached.add(name))
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                         lr=0.5))
    model.train()
    for sizes in BATCHES:
        losses = model.train_step(batch(recipe, sizes), optim)
        assert all(torch.isfinite(v).all() for v in losses.values()), losses
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in frozen.items())
    assert reached == set(tuned), f'no gradient reached {sorted(set(tuned) - reached)}'
    moved = [n for n, v in tuned.items() if not torch.equal(after[f'backbone.{n}'], v)]
    assert bool(moved) == bool(tuned)


@pytest.mark.parametrize('recipe', NAMES)
def test_converted_release_loads_into_the_dense_swin(recipe, tmp_path):
    """The recipes' weights route: tools/model_converters/swin2mmpretrain.py on a (tiny) Swin
    in the official release layout gives a file that PEFTBackbone loads strictly into the
    configs' Swin; the output norms the release lacks (every one but the last, which takes its
    final norm) stay at weight 1 / bias 0, and stage 2's output is timm's, layer-normed (the
    4 x 4 last stage is left out: timm does not shift a window that covers the map, mmdet and
    mmseg do). A file that lacks any other weight is still refused."""
    pytest.importorskip('timm')
    from tests.test_converters.test_swin_converter import (ARCH4, mm_swin4, official_layout,
                                                           tiny_timm_swin4)
    from tools.model_converters import swin2mmpretrain
    timm_model = tiny_timm_swin4()
    torch.save({'model': official_layout(timm_model, mm_swin4())}, tmp_path / 'release.pth')
    swin2mmpretrain.main([str(tmp_path / 'release.pth'), str(tmp_path / 'swin.pth')])
    path = osp.join(ROOT, 'configs', 'dense', NAMES[recipe].format('lora'))
    backbone = Config.fromfile(path).model.backbone
    backbone.backbone.update(ARCH4, window_size=4)
    backbone.pretrained = str(tmp_path / 'swin.pth')
    init_default_scope(SCOPES[recipe])
    model = MODELS.build(backbone)
    model.eval()  # (the toolboxes' Swin.train returns None)
    outs = list(backbone.backbone.out_indices)
    for i in outs[:-1]:
        norm = getattr(model, f'norm{i}')
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
    assert torch.equal(model.norm3.weight, timm_model.norm.weight)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        out = model(x)
        stage2 = timm_model.layers[:3](timm_model.patch_embed(x))  # (B, H, W, C)
        expected = F.layer_norm(stage2, stage2.shape[-1:]).permute(0, 3, 1, 2)
    assert len(out) == len(outs)
    torch.testing.assert_close(out[outs.index(2)], expected, rtol=1e-5, atol=1e-5)
    converted = torch.load(tmp_path / 'swin.pth', weights_only=True)
    del converted['state_dict']['stages.1.blocks.0.norm1.weight']
    torch.save(converted, tmp_path / 'short.pth')
    with pytest.raises(KeyError, match='stages.1.blocks.0.norm1.weight'):
        MODELS.build(dict(backbone.to_dict(), pretrained=str(tmp_path / 'short.pth')))

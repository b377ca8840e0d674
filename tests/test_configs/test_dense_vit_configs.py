"""The plain-ViT dense configs (configs/dense/vit): DyT, DTL, LoRA, Adapter, AdaptFormer and
VPT-deep on MMSegmentation's ViT-B/16, in UperNet on ADE20K and in Mask R-CNN on COCO.

Each config carries the vpetl_mm runtime and the ViT-B count its header states; each whole
model, shrunk to a tiny ViT by config changes, trains on images of two sizes (frozen weights
still, the method's moving) and predicts at the input's size; the weights route the headers give
(mmseg's vit2mmseg.py on a timm ViT) loads into the configs' backbone and computes what timm
does."""
import glob
import os.path as osp
import runpy

import pytest

pytest.importorskip('mmdet')
mmseg = pytest.importorskip('mmseg')
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

from tests.test_models.checks import build_on_meta  # noqa: E402
from vpetl_mm.engine.hooks import add_dyt_rate_loss  # noqa: E402
from vpetl_mm.engine.runtime import PEFT_HOOKS  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'dense', 'vit', '*.py')))
# method -> (type, trainable backbone parameters at ViT-B/16)
METHODS = {'dyt': ('DyT', 1198860), 'dtl': ('DTL', 36864), 'lora': ('LoRA', 294912),
           'adapter': ('Adapter', 156768), 'adaptformer': ('AdaptFormer', 175200),
           'vpt-deep': ('VPT-deep', 92160)}
NAMES = {'upernet': 'upernet_vit-b-p16_{}_mln_8xb2-160k_ade20k-512x512.py',
         'mask-rcnn': 'mask-rcnn_vit-b-p16_{}_mln-fpn_1x_coco.py'}
SCOPES = {'upernet': 'mmseg', 'mask-rcnn': 'mmdet'}
# the two training image sizes (H, W); the second is also the inference size
SIZES = {'upernet': ((32, 32), (64, 96)), 'mask-rcnn': ((64, 64), (96, 128))}
STRIDES = {'upernet': (4, 8, 16, 32), 'mask-rcnn': (4, 8, 16, 32, 64)}
TINY_VIT = dict(img_size=(32, 32), embed_dims=32, num_heads=2, mlp_ratio=2)  # 12 layers, p16


def parts(path):
    """``(task, method)`` of a config file name."""
    task, _, method = osp.basename(path).split('_')[:3]
    return task, method


def config_path(task, method):
    return osp.join(ROOT, 'configs', 'dense', 'vit', NAMES[task].format(method))


def test_table_is_complete():
    expected = {NAMES[t].format(m) for t in NAMES for m in METHODS}
    assert {osp.basename(p) for p in CONFIGS} == expected


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_dense_vit_config(path):
    """Recipe, runtime and the ViT-B count of the header, built on the meta device."""
    task, method = parts(path)
    cfg = Config.fromfile(path)
    assert cfg.default_scope == SCOPES[task]
    assert cfg.model.get('pretrained') is None  # mmseg would hand it to the backbone config
    backbone = cfg.model.backbone
    assert backbone.type == 'vpetl_mm.PEFTBackbone'
    assert backbone.method.type == METHODS[method][0]
    assert backbone.pretrained == 'pretrained/vit-b16_in21k_mmseg.pth'
    inner = backbone.backbone
    assert inner.type.split('.')[-1] == 'VisionTransformer' and inner.init_cfg is None
    assert inner.patch_size == 16 and inner.patch_bias and not inner.final_norm
    assert tuple(inner.out_indices) == (3, 5, 7, 11)
    assert cfg.model.data_preprocessor.mean == [127.5] * 3  # the in21k ViT's [-1, 1] inputs
    assert {t for t, _ in PEFT_HOOKS} <= {h.type for h in cfg.custom_hooks}
    assert cfg.default_hooks.checkpoint.backend_args.backend == 'vpetl_atomic'
    if task == 'upernet':
        assert cfg.model.neck.type == 'MultiLevelNeck'
        assert cfg.model.decode_head.in_channels == [768] * 4
        assert cfg.model.test_cfg.mode == 'slide'
        assert cfg.optim_wrapper.optimizer.lr == 1e-3
    else:
        assert 'mmseg.models' in cfg.custom_imports.imports
        assert [n.type for n in cfg.model.neck] == ['mmseg.MultiLevelNeck', 'FPN']
        assert cfg.model.neck[1].num_outs == 5
        assert cfg.model.rpn_head.anchor_generator.strides == list(STRIDES[task])
    init_default_scope(SCOPES[task])
    built = build_on_meta(MODELS, dict(backbone.to_dict(), pretrained=None))
    expected = METHODS[method][1]
    assert sum(p.numel() for p in built.parameters() if p.requires_grad) == expected
    header = open(path).read().split('\n_base_ = ')[0]
    assert f'Trainable backbone parameters: {expected:,}.' in header


def tiny_cfg(path):
    """The config's model with a 12-layer, 32-wide ViT (patch 16, as the config's) and necks
    and heads to match, no pretrained file, small crops for the sliding-window test and every
    detection kept (score threshold 0), so that predictions have instances to check."""
    task, _ = parts(path)
    model = Config.fromfile(path).model
    model.backbone.pretrained = None
    model.backbone.backbone.update(TINY_VIT)
    if task == 'upernet':
        model.neck.update(in_channels=[32] * 4, out_channels=32)
        model.decode_head.update(in_channels=[32] * 4, channels=16)
        model.auxiliary_head.update(in_channels=32, channels=8)
        model.data_preprocessor.update(size=None, size_divisor=16)
        model.test_cfg.update(crop_size=(64, 64), stride=(32, 32))  # 2 windows
        return model
    model.neck[0].update(in_channels=[32] * 4, out_channels=16)
    model.neck[1].update(in_channels=[16] * 4, out_channels=16)
    model.rpn_head.update(in_channels=16, feat_channels=16)
    model.roi_head.bbox_roi_extractor.out_channels = 16
    model.roi_head.bbox_head.update(in_channels=16, fc_out_channels=32)
    model.roi_head.mask_roi_extractor.out_channels = 16
    model.roi_head.mask_head.update(in_channels=16, conv_out_channels=16)
    model.test_cfg.rcnn.score_thr = 0.0
    return model


def build_tiny(path):
    init_default_scope(SCOPES[parts(path)[0]])
    torch.manual_seed(0)
    return MODELS.build(tiny_cfg(path))


def seg_batch(h, w, classes=150):
    """Two ``h x w`` images with ADE20K-style label maps, as mmseg's pipeline packs them."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(h * w)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, classes, (1, h, w), generator=g))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def det_batch(h, w):
    """Two ``h x w`` images with two boxes and masks each (mmdet's demo inputs)."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(h * w)
    return demo_mm_inputs(batch_size=2, image_shapes=(3, h, w), num_items=[2, 2],
                          num_classes=80, with_mask=True)


def check_predictions(task, outputs, size):
    """Predictions at the input's size: a label map and 150 class scores per pixel (ADE20K),
    or boxes, scores, labels and full-image masks per instance (COCO)."""
    for out in outputs:
        assert tuple(out.ori_shape) == size
        if task == 'upernet':
            assert out.pred_sem_seg.data.shape == (1, *size)
            assert out.seg_logits.data.shape == (150, *size)
            continue
        pred = out.pred_instances
        n = len(pred)
        assert n > 0 and pred.bboxes.shape == (n, 4) and pred.scores.shape == (n, )
        assert pred.labels.shape == (n, ) and pred.masks.shape == (n, *size)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_dense_vit_model_trains_and_predicts(path):
    """A training step on each of two image sizes: finite losses, frozen weights bit-identical,
    every parameter of the method moved; the features leave the necks at the strides the heads
    expect; inference predicts at the input size."""
    task, _ = parts(path)
    model = build_tiny(path)
    add_dyt_rate_loss(model)  # what the configs' DyTHook does (no-op without DyT)
    batch = seg_batch if task == 'upernet' else det_batch
    method = {n: p.detach().clone() for n, p in model.backbone.named_parameters()
              if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert method and frozen
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                         lr=0.5))
    model.train()
    for h, w in SIZES[task]:  # the second step also moves zero-initialised partners
        losses = model.train_step(batch(h, w), optim)
        assert all(torch.isfinite(v).all() for v in losses.values()), losses
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in frozen.items())
    still = [n for n, v in method.items() if torch.equal(after[f'backbone.{n}'], v)]
    assert not still, f'method parameters that did not move: {still}'

    model.eval()
    size = SIZES[task][1]
    data = model.data_preprocessor(batch(*size), False)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        outputs = model.test_step(batch(*size))
    h, w = data['inputs'].shape[-2:]
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-h // s), -(-w // s))
                                                    for s in STRIDES[task]]
    check_predictions(task, outputs, size)


def test_vit2mmseg_route_loads_and_matches_timm(tmp_path):
    """The configs' weights: mmseg's tools/model_converters/vit2mmseg.py on a timm ViT state
    dict loads into the configs' PEFTBackbone (patch-embedding bias included: patch_bias=True)
    and gives timm's block outputs; built for larger images, the backbone gets the position
    table resized as mmseg's own init_weights resizes it."""
    timm = pytest.importorskip('timm')
    converter = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'model_converters',
                         'vit2mmseg.py')
    if not osp.isfile(converter):
        pytest.skip('this mmsegmentation install ships no tools/model_converters')
    convert_vit = runpy.run_path(converter)['convert_vit']
    torch.manual_seed(0)
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=16, embed_dim=32, depth=12, num_heads=2, mlp_ratio=2,
        num_classes=5).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.save(convert_vit(ref.state_dict()), tmp_path / 'vit.pth')  # flat, as vit2mmseg does
    cfg = tiny_cfg(config_path('upernet', 'lora')).backbone  # LoRA: identity at init
    cfg.pretrained = str(tmp_path / 'vit.pth')
    init_default_scope('mmseg')
    backbone = MODELS.build(cfg.to_dict())
    backbone.eval()  # (mmseg's ViT.train returns None)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = ref.blocks(ref._pos_embed(ref.patch_embed(x)))
        expected = tokens[:, 1:].transpose(1, 2).reshape(2, 32, 2, 2)
        torch.testing.assert_close(backbone(x)[-1], expected, rtol=1e-5, atol=1e-5)
    cfg.backbone.img_size = (64, 64)
    larger = MODELS.build(cfg.to_dict())
    torch.testing.assert_close(larger.pos_embed, larger.resize_pos_embed(
        ref.pos_embed.detach(), (4, 4), (2, 2), 'bicubic'))

"""merge_peft.py on detectors and segmentors: the merged checkpoint and plain config it writes
run in MMDetection's ``DetInferencer`` / MMSegmentation's ``MMSegInferencer`` in a process that
never imports vpetl_mm, and predict what the PEFT model predicts.

The tiny configs inherit the model-zoo configs (RetinaNet + Swin, UperNet + ViT) the way a user's
would, wrap the backbone in ``vpetl_mm.PEFTBackbone`` and shrink every width; the test pipelines
resize to 64 px. The trainable-only checkpoint is written by ``TrainableCheckpointHook`` itself.
"""
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from tests._plain_inference import build_inferencer, raw_outputs, tensor_outputs  # noqa: E402
from tools.model_converters import merge_peft  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATASET_META = dict(classes=('cat', 'dog', 'fish'), palette=[(0, 0, 0), (9, 9, 9), (99, 9, 9)])

RETINANET_SWIN = '''
_base_ = ['mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py']
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True, type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='SwinTransformer', embed_dims=16, depths=[2, 2, 2],
                      num_heads=[1, 2, 2], window_size=4, out_indices=(0, 1, 2), init_cfg=None),
        pretrained=PRETRAINED, method=METHOD),
    neck=dict(in_channels=[16, 32, 64], out_channels=16, num_outs=3),
    bbox_head=dict(num_classes=3, in_channels=16, feat_channels=16, stacked_convs=1,
                   anchor_generator=dict(strides=[4, 8, 16])),
    test_cfg=dict(score_thr=0.0, nms_pre=50, max_per_img=10))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
custom_hooks = [dict(type='vpetl_mm.PEFTSummaryHook'),
                dict(type='vpetl_mm.TrainableCheckpointHook')]
'''

UPERNET_VIT = '''
_base_ = ['mmseg::vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py']
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True, type='vpetl_mm.PEFTBackbone',
        backbone=dict(type='VisionTransformer', img_size=(64, 64), patch_size=8, embed_dims=32,
                      num_layers=4, num_heads=2, mlp_ratio=2, out_indices=(0, 1, 2, 3),
                      qkv_bias=True, patch_bias=True, norm_cfg=dict(type='LN', eps=1e-6),
                      interpolate_mode='bicubic', init_cfg=None),
        pretrained=PRETRAINED, method=METHOD),
    neck=dict(in_channels=[32, 32, 32, 32], out_channels=32),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=16, pool_scales=(1, 2),
                     num_classes=3),
    auxiliary_head=dict(in_channels=32, channels=16, num_classes=3))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackSegInputs')]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
custom_hooks = [dict(type='vpetl_mm.TrainableCheckpointHook')]
'''

# name: (toolbox, config text, image (height, width)). The ViT has a patch bias: SSF's shift
# after the patch embedding folds into it (without one the merge is refused, tested elsewhere).
MODELS = {'retinanet-swin': ('mmdet', RETINANET_SWIN, (64, 80)),
          'upernet-vit': ('mmseg', UPERNET_VIT, (64, 64))}


def write_config(tmp_path, name, method, pretrained):
    """The tiny config ``name`` with ``method`` (a config dict) and ``pretrained`` filled in."""
    text = MODELS[name][1].replace('PRETRAINED', repr(pretrained)).replace('METHOD',
                                                                          repr(method))
    path = tmp_path / f'{name}_{method["type"].lower()}.py'
    path.write_text(text)
    return str(path)


def write_pretrained(cfg_file, path):
    """A 'pretrained' inner backbone (its init plus noise) in the toolbox's own layout, so
    that every process rebuilds the same frozen base."""
    from mmengine.registry import MODELS as ROOT_MODELS
    cfg = Config.fromfile(cfg_file)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    inner = ROOT_MODELS.build(merge_peft.plain_backbone_config(cfg.model.backbone))
    inner.init_weights()
    with torch.no_grad():
        for p in inner.parameters():
            p.add_(0.02 * torch.randn_like(p))
    torch.save({'state_dict': inner.state_dict()}, path)


def trained_peft_model(tmp_path, name, method):
    """``(config file, PEFT model)``: the tiny model built from its config, every trainable
    tensor (method, neck, heads) moved away from its initialisation."""
    from mmengine.registry import MODELS as ROOT_MODELS
    pretrained = str(tmp_path / 'pretrained.pth')
    cfg_file = write_config(tmp_path, name, method, pretrained)
    write_pretrained(cfg_file, pretrained)
    cfg = Config.fromfile(cfg_file)
    init_default_scope(cfg.default_scope)
    model = ROOT_MODELS.build(cfg.model).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return cfg_file, model


def save_as_the_hook_does(model, path):
    """What a training run writes with ``TrainableCheckpointHook``: the runner's checkpoint
    (full state dict, ``meta['dataset_meta']``) cut down by the hook's own
    ``before_save_checkpoint``."""
    from mmengine.logging import MMLogger

    from vpetl_mm.engine.hooks import TrainableCheckpointHook
    checkpoint = {'state_dict': model.state_dict(), 'meta': {'dataset_meta': DATASET_META}}
    runner = SimpleNamespace(model=model, logger=MMLogger.get_current_instance())
    TrainableCheckpointHook().before_save_checkpoint(runner, checkpoint)
    torch.save(checkpoint, path)
    return checkpoint


def write_image(path, size):
    import mmcv
    rng = np.random.RandomState(0)
    mmcv.imwrite(rng.randint(0, 256, (*size, 3), dtype=np.uint8), str(path))
    return str(path)


def run(argv):
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize('name,method', [('retinanet-swin', dict(type='LoRA', rank=2)),
                                         ('upernet-vit', dict(type='SSF'))])
def test_merged_dense_model_runs_in_the_toolbox_inferencer(tmp_path, name, method):
    toolbox, _, size = MODELS[name]
    cfg_file, model = trained_peft_model(tmp_path, name, method)
    trainable = save_as_the_hook_does(model, tmp_path / 'iter_100.pth')
    assert any(k.startswith('backbone.') for k in trainable['state_dict'])  # the method's
    merged, plain_cfg = tmp_path / 'merged.pth', tmp_path / 'merged.py'
    run(['tools/model_converters/merge_peft.py', cfg_file, str(tmp_path / 'iter_100.pth'),
         str(merged)])
    assert 'vpetl_mm' not in plain_cfg.read_text()
    state = torch.load(merged, weights_only=True)
    assert state['meta']['dataset_meta'] == DATASET_META
    base = torch.load(tmp_path / 'pretrained.pth', weights_only=True)['state_dict']
    weights = state['state_dict']
    changed = [k for k, v in base.items() if not torch.equal(weights['backbone.' + k], v)]
    assert changed, 'the merge left every backbone weight as pretrained: nothing was tested'

    image = write_image(tmp_path / 'image.jpg', size)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    torch.save(x, tmp_path / 'x.pth')
    out = run(['tests/_plain_inference.py', toolbox, str(plain_cfg), str(merged), image,
               str(tmp_path / 'x.pth'), str(tmp_path / 'plain.pth')])
    assert 'All keys matched successfully' in out
    plain = torch.load(tmp_path / 'plain.pth', weights_only=True)
    assert plain['classes'] == DATASET_META['classes']
    for got, want in zip(plain['tensor'], tensor_outputs(model, x), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    # the same inferencer on the unmerged PEFT model (vpetl_mm imported here)
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': DATASET_META}},
               tmp_path / 'unmerged.pth')
    peft = raw_outputs(build_inferencer(toolbox, cfg_file, str(tmp_path / 'unmerged.pth')),
                       image)
    assert peft.keys() == plain['raw'].keys()
    assert all(v.numel() for v in peft.values())
    for key, want in peft.items():
        torch.testing.assert_close(plain['raw'][key], want, rtol=1e-4, atol=1e-4)


def test_merge_peft_refuses_a_detector_with_a_method_that_cannot_merge(tmp_path):
    cfg_file, model = trained_peft_model(tmp_path, 'retinanet-swin', dict(type='Mona'))
    save_as_the_hook_does(model, tmp_path / 'mona.pth')
    with pytest.raises(SystemExit) as exit_info:
        merge_peft.main([cfg_file, str(tmp_path / 'mona.pth'), str(tmp_path / 'merged.pth')])
    message = str(exit_info.value.code)
    assert message.startswith('merge_peft: error: cannot merge') and 'mona' in message
    assert 'not mergeable' in message
    assert not (tmp_path / 'merged.pth').exists() and not (tmp_path / 'merged.py').exists()

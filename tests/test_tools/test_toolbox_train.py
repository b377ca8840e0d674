"""tools/train.py and tools/test.py on one config of each other toolbox (MMAction2, MMSegmentation,
MMDetection): a tiny PEFT model in the toolbox's own scope, its own pipelines, collate, data
preprocessor and metric, on small data in the real formats that the test writes (mp4 videos, an
ADE20K-layout folder, a COCO json), with images / videos of different sizes."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

import vpetl_mm  # noqa: F401  (allow-lists mmengine's checkpoint types for torch.load)
from tests._video_helpers import write_video
from tests.test_models import test_specs_toolboxes as toolboxes

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RUNTIME = dict(
    custom_imports=dict(imports=['vpetl_mm'], allow_failed_imports=False),
    default_hooks=dict(timer=dict(type='IterTimerHook'), logger=dict(type='LoggerHook', interval=1),
                       param_scheduler=dict(type='ParamSchedulerHook'),
                       checkpoint=dict(type='CheckpointHook', interval=1),
                       sampler_seed=dict(type='DistSamplerSeedHook')),
    custom_hooks=[dict(type='vpetl_mm.PEFTSummaryHook'),
                  dict(type='vpetl_mm.TrainableCheckpointHook')],
    env_cfg=dict(dist_cfg=dict(backend='gloo')),
    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
    train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1),
    val_cfg=dict(type='ValLoop'), test_cfg=dict(type='TestLoop'),
    log_level='INFO', randomness=dict(seed=0))
LORA = dict(type='LoRA', rank=2, alpha=4, targets=('q', 'v'))
# mmaction2 1.2.0's mean_class_accuracy fails on numpy 2 (ragged np.concatenate): top-k only
ACC = dict(type='AccMetric', metric_list=('top_k_accuracy', ))


def loader(dataset, batch_size=2, shuffle=False):
    return dict(batch_size=batch_size, num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=shuffle), dataset=dataset)


def write_pretrained(scope, backbone, path):
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(scope)
    torch.manual_seed(0)
    torch.save({'state_dict': MODELS.build(dict(backbone)).state_dict()}, path)


def wrapped(backbone, pretrained):
    return dict(type='vpetl_mm.PEFTBackbone', backbone=backbone, pretrained=str(pretrained),
                method=dict(LORA))


def video_config(tmp_path):
    """Recognizer3D + the mmaction ViT on mp4 files listed as ``<file> <label>``."""
    lines = []
    for i, size in enumerate([(40, 48), (36, 44), (48, 40), (44, 36)]):  # decoded by PyAV
        name = f'v{i}.mp4'
        write_video(tmp_path / name, size, seed=i)
        lines.append(f'{name} {i % 3}\n')
    (tmp_path / 'list.txt').write_text(''.join(lines))
    _, backbone, model_fn, _ = toolboxes.mmaction_vit()
    write_pretrained('mmaction', backbone, tmp_path / 'backbone.pth')
    pipeline = [dict(type='PyAVInit'),
                dict(type='SampleFrames', clip_len=4, frame_interval=2, num_clips=1,
                     test_mode=True),
                dict(type='PyAVDecode'), dict(type='Resize', scale=(32, 32), keep_ratio=False),
                dict(type='FormatShape', input_format='NCTHW'), dict(type='PackActionInputs')]
    dataset = dict(type='VideoDataset', ann_file=str(tmp_path / 'list.txt'),
                   data_prefix=dict(video=str(tmp_path)), pipeline=pipeline)
    return dict(default_scope='mmaction', model=model_fn(wrapped(backbone,
                                                                  tmp_path / 'backbone.pth')),
                train_dataloader=loader(dataset, shuffle=True), val_dataloader=loader(dataset),
                test_dataloader=loader(dataset), val_evaluator=ACC,
                test_evaluator=ACC), 'acc/top1'


def seg_config(tmp_path):
    """EncoderDecoder + the mmseg ViT on an ADE20K-layout folder, images of different sizes."""
    rng = np.random.RandomState(0)
    for split in ('training', 'validation'):
        os.makedirs(tmp_path / 'images' / split)
        os.makedirs(tmp_path / 'annotations' / split)
        for i, (h, w) in enumerate([(40, 56), (48, 36), (36, 44)]):
            Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8)).save(
                tmp_path / 'images' / split / f'ADE_{i}.jpg')
            Image.fromarray(rng.randint(0, 4, (h, w), dtype=np.uint8)).save(
                tmp_path / 'annotations' / split / f'ADE_{i}.png')
    _, backbone, model_fn, _ = toolboxes.mmseg_vit()
    write_pretrained('mmseg', backbone, tmp_path / 'backbone.pth')
    model = model_fn(wrapped(backbone, tmp_path / 'backbone.pth'))
    model['decode_head']['num_classes'] = 150
    model['test_cfg'] = dict(mode='whole')
    train = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True),
             dict(type='Resize', scale=(32, 32), keep_ratio=True), dict(type='PackSegInputs')]
    test = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32), keep_ratio=True),
            dict(type='LoadAnnotations', reduce_zero_label=True), dict(type='PackSegInputs')]

    def dataset(split, pipeline):
        return dict(type='ADE20KDataset', data_root=str(tmp_path), pipeline=pipeline,
                    data_prefix=dict(img_path=f'images/{split}',
                                     seg_map_path=f'annotations/{split}'))
    return dict(default_scope='mmseg', model=model,
                train_dataloader=loader(dataset('training', train), shuffle=True),
                val_dataloader=loader(dataset('validation', test), batch_size=1),
                test_dataloader=loader(dataset('validation', test), batch_size=1),
                val_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
                test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU'])), 'mIoU'


def det_config(tmp_path):
    """Mask R-CNN + the mmdet Swin on a COCO-format folder, images of different sizes."""
    rng = np.random.RandomState(0)
    os.makedirs(tmp_path / 'images')
    images, annotations = [], []
    for i, (h, w) in enumerate([(64, 80), (72, 64), (60, 70), (80, 72)]):
        Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8)).save(
            tmp_path / 'images' / f'{i}.jpg')
        images.append(dict(id=i, file_name=f'{i}.jpg', height=h, width=w))
        x, y, bw, bh = 8.0, 10.0, 30.0, 24.0
        annotations.append(dict(id=i, image_id=i, category_id=1 + i % 2, bbox=[x, y, bw, bh],
                                area=bw * bh, iscrowd=0,
                                segmentation=[[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=1, name='a'), dict(id=2, name='b')])
    (tmp_path / 'ann.json').write_text(json.dumps(coco))
    _, backbone, model_fn, _ = toolboxes.mmdet_swin()
    write_pretrained('mmdet', backbone, tmp_path / 'backbone.pth')
    model = Config(dict(model=model_fn(wrapped(backbone, tmp_path / 'backbone.pth')))).model
    model.roi_head.bbox_head.num_classes = 2
    model.roi_head.mask_head.num_classes = 2
    train = [dict(type='LoadImageFromFile'),
             dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
             dict(type='Resize', scale=(64, 64), keep_ratio=True), dict(type='PackDetInputs')]
    test = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64), keep_ratio=True),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                                   'img_shape', 'scale_factor'))]

    def dataset(pipeline, test_mode):
        return dict(type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
                    data_prefix=dict(img='images/'), metainfo=dict(classes=('a', 'b')),
                    test_mode=test_mode, pipeline=pipeline)
    metric = dict(type='CocoMetric', ann_file=str(tmp_path / 'ann.json'),
                  metric=['bbox', 'segm'])
    return dict(default_scope='mmdet', model=model.to_dict(),
                train_dataloader=loader(dataset(train, False), shuffle=True),
                val_dataloader=loader(dataset(test, True)),
                test_dataloader=loader(dataset(test, True)),
                val_evaluator=metric, test_evaluator=metric), 'coco/bbox_mAP'


def run(args, cwd):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{args} failed:\n{output[-6000:]}'
    return output


def metric_value(output, mode, key):
    found = re.findall(rf'Epoch\({mode}\).*?{re.escape(key)}: (-?[\d.]+)', output)
    assert found, f'no {key} in the {mode} output:\n{output[-3000:]}'
    return float(found[-1])


@pytest.mark.parametrize('scope, build', [('mmaction', video_config), ('mmseg', seg_config),
                                          ('mmdet', det_config)])
def test_train_and_test_tools_on_toolbox_config(scope, build, tmp_path):
    pytest.importorskip(scope)
    data = tmp_path / 'data'
    data.mkdir()
    cfg, key = build(data)
    path = tmp_path / f'tiny_{scope}.py'
    Config(dict(RUNTIME, **cfg)).dump(str(path))
    work = tmp_path / 'work'
    out = run([osp.join(ROOT, 'tools', 'train.py'), str(path), '--work-dir', str(work)], ROOT)
    assert 'Trainable parameters' in out
    trained = metric_value(out, 'val', key)
    ckpt = work / 'epoch_1.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    ups = [v for k, v in state.items() if '.lora_' in k and k.endswith('.up')]
    assert ups and any(v.abs().sum() > 0 for v in ups)  # LoRA's up starts at zero: it trained
    out = run([osp.join(ROOT, 'tools', 'test.py'), str(path), str(ckpt), '--work-dir',
               str(tmp_path / 'test'), '--no-merge'], ROOT)
    assert metric_value(out, 'test', key) == trained

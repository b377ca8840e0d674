"""The README's model-zoo route through the project's tools: mmpretrain's own ViT config with its
backbone wrapped in PEFTBackbone (configs/examples/vit-b_lora_in1k-zoo.py), mmpretrain's ImageNet
dataset, pipeline and runtime. The tools add the vpetl_mm hooks that runtime lacks, so the run
saves trainable-only checkpoints with ``meta['peft']`` and logs the parameter summary."""
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip('mmpretrain')
from tests.test_tools.test_first_run import (repo_layout, run, top1,  # noqa: E402
                                             write_pretrained)

ZOO_CFG = 'configs/examples/vit-b_lora_in1k-zoo.py'
OPTIONS = [
    'model.backbone.backbone.arch=deit-tiny', 'model.head.in_channels=192',
    'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
    'val_dataloader.batch_size=4', 'val_dataloader.num_workers=0',
    'test_dataloader.num_workers=0', 'train_cfg.max_epochs=1',
]


def write_imagenet(folder, per_split=dict(train=8, val=4), classes=('n01440764', 'n01443537')):
    """mmpretrain's ImageNet layout: ``train/<wnid>/*.JPEG``, ``val/*.JPEG``,
    ``meta/{train,val}.txt`` with ``path label`` lines; images of different sizes."""
    rng = np.random.RandomState(0)
    os.makedirs(folder / 'meta')
    for split, n in per_split.items():
        lines = []
        for i in range(n):
            label = i % len(classes)
            name = (f'{classes[label]}/{i:04d}.JPEG' if split == 'train' else
                    f'ILSVRC2012_val_{i:08d}.JPEG')
            os.makedirs((folder / split / name).parent, exist_ok=True)
            h, w = rng.randint(40, 90, size=2)
            Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8)).save(
                folder / split / name, format='JPEG')
            lines.append(f'{name} {label}\n')
        (folder / 'meta' / f'{split}.txt').write_text(''.join(lines))


def test_zoo_config_trains_with_the_project_runtime(tmp_path):
    work = repo_layout(tmp_path)
    write_imagenet(work / 'data' / 'imagenet')
    write_pretrained(str(work / 'pretrained' / 'vit-b16_in21k.pth'), arch='deit-tiny',
                     img_size=224, patch_size=16)
    out = run([sys.executable, 'tools/train.py', ZOO_CFG, '--cfg-options', *OPTIONS],
              cwd=work)
    for hook in ('PEFTSelectionHook', 'DyTHook', 'PEFTSummaryHook', 'TrainableCheckpointHook'):
        assert f'added custom_hooks: vpetl_mm.{hook}' in out
    assert 'Trainable parameters' in out
    ckpt = work / 'work_dirs' / 'vit-b_lora_in1k-zoo' / 'epoch_1.pth'
    saved = torch.load(ckpt, map_location='cpu', weights_only=False)
    assert saved['meta']['peft'] == [[{'type': 'LoRA', 'rank': 8, 'targets': ('q', 'v')}]]
    keys = set(saved['state_dict'])
    assert keys and all('.lora_' in k or k.startswith('head.') for k in keys), sorted(keys)[:8]
    assert sum(v.numel() for k, v in saved['state_dict'].items() if '.lora_' in k) == (
        12 * 2 * 2 * 8 * 192)  # deit-tiny: 12 blocks, q and v, down + up of rank 8
    trained = top1(out, 'val')
    out = run([sys.executable, 'tools/test.py', ZOO_CFG, str(ckpt), '--cfg-options', *OPTIONS],
              cwd=work)
    assert top1(out, 'test') == trained

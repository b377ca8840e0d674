"""What a newcomer meets on bad input: errors that name the argument, the file and the fix,
a warning where the frozen backbone stays random, and files others can read."""
import copy
import logging
import os
import stat
import sys

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import vpetl_mm  # noqa: E402
from vpetl_mm.compat.atomic_file import atomic_write_bytes  # noqa: E402

from tests.test_engine.test_api import LORA, TINY_VIT  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_backbone(**kwargs):
    init_default_scope('mmpretrain')
    return vpetl_mm.PEFTBackbone(copy.deepcopy(TINY_VIT), method=copy.deepcopy(LORA), **kwargs)


def test_missing_weights_hint_names_pretrained_prefix(tmp_path):
    whole = {f'backbone.{k}': v for k, v in tiny_backbone().state_dict().items()
             if '.lora_' not in k}
    torch.save({'state_dict': whole}, tmp_path / 'classifier.pth')
    with pytest.raises(KeyError, match=r"pretrained_prefix=\.\.\. \(e\.g\. 'backbone\.'"):
        tiny_backbone(pretrained=str(tmp_path / 'classifier.pth'))
    loaded = tiny_backbone(pretrained=str(tmp_path / 'classifier.pth'),
                           pretrained_prefix='backbone.')
    assert torch.equal(loaded.pos_embed, whole['backbone.pos_embed'])


def test_unreadable_pretrained_files_are_named(tmp_path):
    npz = tmp_path / 'ViT-Ti_16.npz'
    np.savez(npz, cls=np.zeros((1, 1, 8)), embedding=np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"pretrained='.*ViT-Ti_16\.npz' is a NumPy archive.*"
                                         r'vit2mmpretrain\.py'):
        tiny_backbone(pretrained=str(npz))
    renamed = tmp_path / 'vit.pth'  # an .npz under another name is recognised by its content
    renamed.write_bytes(npz.read_bytes())
    with pytest.raises(ValueError, match='is a NumPy archive'):
        tiny_backbone(pretrained=str(renamed))
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': tiny_backbone().state_dict()}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"pretrained='.*truncated\.pth' \(2,000 bytes\) "
                                         'cannot be read: a zip archive torch cannot read'):
        tiny_backbone(pretrained=str(truncated))
    with pytest.raises(FileNotFoundError, match=r"pretrained='nowhere\.pth': no such file"):
        tiny_backbone(pretrained='nowhere.pth')
    with pytest.raises(ValueError, match=r"checkpoint='.*truncated\.pth'"):
        vpetl_mm.load_trainable(tiny_backbone(), str(truncated))


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_random_frozen_backbone_warns():
    logger = MMLogger.get_current_instance()
    records = _Records()
    logger.addHandler(records)
    try:
        tiny_backbone()
        assert any('the frozen backbone keeps RANDOM weights' in m for m in records.messages)
        records.messages.clear()
        init_default_scope('mmpretrain')  # training from scratch: nothing is frozen
        vpetl_mm.PEFTBackbone(copy.deepcopy(TINY_VIT), method=dict(type='FullFineTune'))
        assert not any('RANDOM' in m for m in records.messages)
    finally:
        logger.removeHandler(records)


@pytest.mark.parametrize('umask', [0o022, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    """Atomic writes (checkpoints, converter outputs, exported weights) get the mode an
    ordinary ``open()`` would give them, not ``mkstemp``'s 0600; a replaced file keeps its
    mode."""
    old = os.umask(umask)
    try:
        atomic_write_bytes(b'x', str(tmp_path / 'ckpt.pth'))
        vpetl_mm.save_trainable(tiny_backbone(), str(tmp_path / 'lora.pth'))
        sys.path.insert(0, os.path.join(ROOT, 'tools', 'model_converters'))
        from _common import save_atomic
        save_atomic({'a': torch.zeros(1)}, str(tmp_path / 'converted.pth'))
    finally:
        os.umask(old)
    for name in ('ckpt.pth', 'lora.pth', 'converted.pth'):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name
    os.chmod(tmp_path / 'ckpt.pth', 0o640)
    atomic_write_bytes(b'y', str(tmp_path / 'ckpt.pth'))
    assert stat.S_IMODE(os.stat(tmp_path / 'ckpt.pth').st_mode) == 0o640
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.part')]

"""The official-Swin converter: a tiny timm Swin with random weights, written in the official
layout (patch merging at the end of a stage, as the release has it; timm's own
``checkpoint_filter_fn`` reads it back), converted, must give mmpretrain's ``SwinTransformer``
the features of the timm model."""
import os.path as osp
import re

import pytest
import torch

timm = pytest.importorskip('timm')
pytest.importorskip('mmpretrain')
from timm.models.swin_transformer import checkpoint_filter_fn  # noqa: E402

from tools.model_converters import swin2mmpretrain  # noqa: E402
from vpetl_mm.models.converters import is_ms_swin, split_ms_swin  # noqa: E402


def tiny_timm_swin():
    torch.manual_seed(0)
    model = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False, embed_dim=16,
                              depths=(2, 2, 2), num_heads=(2, 2, 4), img_size=64,
                              window_size=4, num_classes=7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def official_layout(timm_model, mm_model):
    """timm's state dict in the release's layout: merging at the end of the previous stage, ``head``
    for timm's ``head.fc``, the
    relative-position index buffers (timm keeps them non-persistent; the release has them) and an
    attn_mask buffer, as the release files hold."""
    state = {}
    for key, value in timm_model.state_dict().items():
        key = re.sub(r'layers\.(\d+)\.downsample',
                     lambda m: f'layers.{int(m.group(1)) - 1}.downsample', key)
        state[key.replace('head.fc.', 'head.')] = value.clone()
    for key, value in mm_model.state_dict().items():
        if key.endswith('relative_position_index'):
            state[key.replace('stages.', 'layers.').replace('.w_msa', '')] = value.clone()
    state['layers.0.blocks.1.attn_mask'] = torch.zeros(16, 16, 16)
    return state


def mm_swin(**kw):
    from mmpretrain.models import SwinTransformer
    model = SwinTransformer(arch=dict(embed_dims=16, depths=[2, 2, 2], num_heads=[2, 2, 4]),
                            img_size=64, patch_size=4, window_size=4, out_indices=(2, ), **kw)
    model.eval()  # (mmpretrain's Swin.train returns None)
    return model


def test_converted_swin_matches_timm(tmp_path):
    model = tiny_timm_swin()
    mm = mm_swin()
    official = official_layout(model, mm)
    assert is_ms_swin(official)
    # timm reads the official layout back into its own model unchanged
    restored = checkpoint_filter_fn(dict(official), model)
    assert all(torch.equal(restored[k], v) for k, v in model.state_dict().items())
    converted, dropped = split_ms_swin(official)
    assert sorted(dropped) == ['head.bias', 'head.weight', 'layers.0.blocks.1.attn_mask']
    mm.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model.forward_features(x).permute(0, 3, 1, 2)  # (B, C, H, W), normed
        out = mm(x)[-1]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_cli_writes_a_loadable_checkpoint_and_names_bad_input(tmp_path, capsys):
    model = tiny_timm_swin()
    src, dst = tmp_path / 'swin_official.pth', tmp_path / 'out' / 'swin_mm.pth'
    torch.save({'model': official_layout(model, mm_swin())}, src)
    swin2mmpretrain.main([str(src), str(dst)])
    saved = torch.load(dst, weights_only=True)
    assert saved['meta'] == {'source': 'swin_official.pth', 'converter': 'swin2mmpretrain'}
    mm_swin().load_state_dict(saved['state_dict'], strict=True)
    assert '3 stages, embed dims 16' in capsys.readouterr().out
    torch.save({'model': {'blocks.0.attn.qkv.weight': torch.zeros(3, 1)}}, tmp_path / 'vit.pth')
    with pytest.raises(SystemExit):
        swin2mmpretrain.main([str(tmp_path / 'vit.pth'), str(tmp_path / 'x.pth')])
    assert 'not an official Swin' in capsys.readouterr().err
    assert not osp.exists(tmp_path / 'x.pth')

"""The Swin v1 converter: a tiny timm Swin with random weights, written in the official layout
(patch merging at the end of a stage, as the release has it; timm's own ``checkpoint_filter_fn``
reads it back) or saved as timm's own ``state_dict()`` (merging at the start of the next stage,
``head.fc``, no index buffers), converted, must give mmpretrain's ``SwinTransformer`` the features
of the timm model; other layouts are refused by name."""
import os.path as osp
import re

import pytest
import torch

timm = pytest.importorskip('timm')
pytest.importorskip('mmpretrain')
from timm.models.swin_transformer import checkpoint_filter_fn  # noqa: E402

from tools.model_converters import swin2mmpretrain  # noqa: E402
from vpetl_mm.models.converters import is_ms_swin, split_ms_swin  # noqa: E402
from vpetl_mm.models.converters.swin import (check_swin_layout, detect_swin_layout,  # noqa: E402
                                             relative_position_index)


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
    out = capsys.readouterr().out
    assert 'official-swin-v1 layout' in out and '3 stages, embed dims 16' in out
    assert 'rebuilt 6 relative_position_index tables' in out
    torch.save({'model': {'blocks.0.attn.qkv.weight': torch.zeros(3, 1)}}, tmp_path / 'vit.pth')
    with pytest.raises(SystemExit):
        swin2mmpretrain.main([str(tmp_path / 'vit.pth'), str(tmp_path / 'x.pth')])
    err = capsys.readouterr().err
    assert 'not an official Swin' in err and 'unknown layout' in err
    assert not osp.exists(tmp_path / 'x.pth')


# ---- timm >= 0.9's own layout, four stages (three patch mergings) ----

ARCH4 = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4])


def tiny_timm_swin4():
    """img 128, patch 4, window 4: resolutions 32, 16, 8, 4 (the last stage unshifted in both)."""
    torch.manual_seed(1)
    model = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False, embed_dim=16,
                              depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), img_size=128,
                              window_size=4, num_classes=5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def mm_swin4():
    from mmpretrain.models import SwinTransformer
    model = SwinTransformer(arch=ARCH4, img_size=128, patch_size=4, window_size=4,
                            out_indices=(3, ))
    model.eval()
    return model


def test_timm_patch_merging_concatenates_in_the_official_order():
    """timm's ``PatchMerging`` (reshape / permute) against the release's explicit
    ``cat([x0, x1, x2, x3])`` with x0..x3 at (row, col) offsets (0,0), (1,0), (0,1), (1,1): the
    converter permutes both layouts alike only because these agree."""
    from timm.models.swin_transformer import PatchMerging
    torch.manual_seed(2)
    merge = PatchMerging(dim=3).eval()
    x = torch.randn(2, 6, 4, 3)  # (B, H, W, C)
    official = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2],
                          x[:, 1::2, 1::2]], -1)
    with torch.no_grad():
        torch.testing.assert_close(merge(x), merge.reduction(merge.norm(official)))
        swapped = official.reshape(2, 3, 2, 4, 3)[:, :, :, [0, 2, 1, 3]].reshape(2, 3, 2, 12)
        assert not torch.allclose(merge(x), merge.reduction(merge.norm(swapped)))


def test_timm_state_dict_through_the_cli_matches_timm(tmp_path, capsys):
    model = tiny_timm_swin4()
    state = model.state_dict()
    assert 'layers.1.downsample.reduction.weight' in state
    assert not any(k.startswith('layers.0.downsample') for k in state)
    assert not any(k.endswith(('relative_position_index', 'attn_mask')) for k in state)
    src, dst = tmp_path / 'swin_timm.pth', tmp_path / 'swin_mm.pth'
    torch.save(state, src)
    swin2mmpretrain.main([str(src), str(dst)])
    out = capsys.readouterr().out
    assert 'timm-swin-v1 layout' in out and '4 stages, embed dims 16' in out
    assert 'left out 2 head and 0 attn_mask' in out
    assert 'rebuilt 8 relative_position_index tables' in out
    converted = torch.load(dst, weights_only=True)['state_dict']
    for i in range(3):  # merging i halves stage i's output: 4C -> 2C with C = 16 * 2**i
        assert converted[f'stages.{i}.downsample.reduction.weight'].shape == (32 << i, 64 << i)
    assert not any(k.startswith('stages.3.downsample') for k in converted)
    mm = mm_swin4()
    mm.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        expected = model.forward_features(x)  # (B, H, W, C) after the final norm
        assert expected.shape == (2, 4, 4, 128)
        out = mm(x)
    assert len(out) == 1 and out[0].shape == (2, 128, 4, 4)  # (B, C, H, W) after norm3
    torch.testing.assert_close(out[0], expected.permute(0, 3, 1, 2), rtol=1e-5, atol=1e-5)


def test_timm_and_official_layouts_convert_to_the_same_tensors():
    model = tiny_timm_swin4()
    timm_state = model.state_dict()
    official = official_layout(model, mm_swin4())
    assert 'layers.2.downsample.reduction.weight' in official
    assert detect_swin_layout(timm_state) == 'timm-swin-v1'
    assert detect_swin_layout(official) == 'official-swin-v1'
    assert is_ms_swin(timm_state) and is_ms_swin(official)
    from_timm, dropped_timm = split_ms_swin(timm_state)
    from_official, dropped_official = split_ms_swin(official)
    assert sorted(dropped_timm) == ['head.fc.bias', 'head.fc.weight']
    assert sorted(dropped_official) == ['head.bias', 'head.weight', 'layers.0.blocks.1.attn_mask']
    assert sorted(from_timm) == sorted(from_official) == sorted(mm_swin4().state_dict())
    for key, value in from_official.items():
        assert from_timm[key].dtype == value.dtype, key
        assert torch.equal(from_timm[key], value), key


def test_rebuilt_relative_position_index_is_window_msa_s():
    from mmpretrain.models.utils.attention import WindowMSA
    from timm.models.swin_transformer import get_relative_position_index
    for window in ((1, 1), (2, 2), (4, 4), (7, 7), (12, 12), (3, 5)):
        expected = WindowMSA(embed_dims=4, window_size=window, num_heads=2).relative_position_index
        rebuilt = relative_position_index(window)
        assert rebuilt.dtype == expected.dtype and torch.equal(rebuilt, expected), window
        # the official formula (timm keeps it) gives the same table
        assert torch.equal(rebuilt, get_relative_position_index(*window).long()), window
    assert torch.equal(relative_position_index(7), relative_position_index((7, 7)))
    # the converter reads the window off the bias table: (2w-1)^2 rows
    converted, _ = split_ms_swin(tiny_timm_swin4().state_dict())
    index = converted['stages.3.blocks.1.attn.w_msa.relative_position_index']
    assert torch.equal(index, relative_position_index(4)) and index.shape == (16, 16)


def test_bad_tables_are_named():
    official = official_layout(tiny_timm_swin4(), mm_swin4())
    key = 'layers.1.blocks.0.attn.relative_position_index'
    official[key] = official[key].flip(0)
    with pytest.raises(ValueError, match=re.escape(key) + ' differs'):
        split_ms_swin(official)
    state = tiny_timm_swin4().state_dict()
    key = 'layers.2.blocks.1.attn.relative_position_bias_table'
    state[key] = torch.zeros(48, 2)  # not (2w-1)^2 rows
    with pytest.raises(ValueError, match=re.escape(key) + r' has shape \(48, 2\)'):
        split_ms_swin(state)


def test_one_stage_layout_is_told_by_the_head():
    blocks = {'layers.0.blocks.0.attn.relative_position_bias_table': torch.zeros(9, 1)}
    assert detect_swin_layout({**blocks, 'head.fc.weight': torch.zeros(2, 4)}) == 'timm-swin-v1'
    assert detect_swin_layout({**blocks, 'head.weight': torch.zeros(2, 4)}) == 'official-swin-v1'


def _hf_keys(prefix):
    return {f'{prefix}embeddings.patch_embeddings.projection.weight': torch.zeros(4, 3, 4, 4),
            f'{prefix}encoder.layers.0.blocks.0.attention.self.query.weight': torch.zeros(4, 4),
            f'{prefix}encoder.layers.0.blocks.0.attention.self.relative_position_bias_table':
                torch.zeros(9, 1)}


def _refused():
    """``(name, state dict, layout, words the message must hold)`` for each refused layout."""
    mm = mm_swin4().state_dict()
    v2 = timm.create_model('swinv2_tiny_window8_256', pretrained=False, embed_dim=16,
                           depths=(1, 1), num_heads=(1, 1), img_size=32, window_size=4)
    mixed = tiny_timm_swin4().state_dict()
    mixed['layers.0.downsample.reduction.weight'] = torch.zeros(32, 64)
    return [
        ('openmmlab', mm, 'openmmlab', 'needs no conversion'),
        ('openmmlab-classifier', {'backbone.' + k: v for k, v in mm.items()}, 'openmmlab',
         'needs no conversion'),
        ('hf', _hf_keys('swin.'), 'hf-transformers-swin', 'HuggingFace transformers'),
        ('hf-bare', _hf_keys(''), 'hf-transformers-swin', 'HuggingFace transformers'),
        ('swin-v2', v2.state_dict(), 'swin-v2', 'Swin v2'),
        ('swin-v2-logit-scale', {'layers.0.blocks.0.attn.logit_scale': torch.zeros(1, 1, 1)},
         'swin-v2', 'Swin v2'),
        ('swin-v2-cpb-mlp', {'layers.0.blocks.0.attn.cpb_mlp.0.weight': torch.zeros(4, 2)},
         'swin-v2', 'Swin v2'),
        ('garbage', {'foo.weight': torch.zeros(1), 'bar.bias': torch.zeros(1)}, 'unknown',
         "unknown layout: not an official Swin v1 (or timm Swin v1) state dict; first keys: "
         "'foo.weight', 'bar.bias'"),
        ('mixed-merging', mixed, 'unknown', 'patch merging under layers.[0, 1, 2, 3]'),
    ]


def test_refused_layouts_are_named(tmp_path, capsys):
    for name, state, layout, words in _refused():
        assert detect_swin_layout(state) == layout, name
        assert not is_ms_swin(state), name
        with pytest.raises(ValueError) as err:
            check_swin_layout(state)
        assert words in str(err.value), (name, str(err.value))
        with pytest.raises(ValueError) as err:
            split_ms_swin(state)
        assert words in str(err.value), (name, str(err.value))
        src, dst = tmp_path / f'{name}.pth', tmp_path / f'{name}_out.pth'
        torch.save({'state_dict': state}, src)
        with pytest.raises(SystemExit) as exit_:
            swin2mmpretrain.main([str(src), str(dst)])
        assert exit_.value.code == 1, name
        err = capsys.readouterr().err
        assert err.startswith(f'swin2mmpretrain: error: {src}: '), (name, err)
        assert words in err, (name, err)
        assert not osp.exists(dst), name


@pytest.mark.parametrize('toolbox', ['mmdet', 'mmseg'])
def test_converted_swin_is_also_the_dense_toolboxes_layout(tmp_path, toolbox):
    """The converter's file of an official release loads with ``strict=True`` into mmdet's and
    mmseg's ``SwinTransformer`` (``out_indices=(3,)``: the release's final norm is ``norm3``) and
    gives mmpretrain's features, so the dense configs need no toolbox converter. The input is
    256 px: the last map (8 x 8) is larger than the window (4), where mmpretrain (which stops
    shifting a map equal to the window) and the dense Swins (which pad it) agree."""
    backbones = pytest.importorskip(f'{toolbox}.models.backbones')
    src, dst = tmp_path / 'swin_official.pth', tmp_path / 'swin_mm.pth'
    torch.save({'model': official_layout(tiny_timm_swin4(), mm_swin4())}, src)
    swin2mmpretrain.main([str(src), str(dst)])
    converted = torch.load(dst, weights_only=True)['state_dict']
    dense = backbones.SwinTransformer(
        embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=4,
        out_indices=(3, ))
    dense.load_state_dict(converted, strict=True)
    dense.eval()
    mm = mm_swin4()
    mm.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        expected, = mm(x)
        out, = dense(x)
    assert out.shape == expected.shape == (2, 128, 8, 8)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)

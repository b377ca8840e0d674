"""ViT converters (Google npz, timm state dict -> mmpretrain) and their command-line tool.

A tiny timm ViT with random weights is the reference. It is written out in the Google npz key
layout by a writer in this file; timm's own npz loader reading that file back into identical
weights shows the writer produces the real layout. The converted weights must then give the same
features in mmpretrain's ``VisionTransformer`` as the timm model.
"""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

timm = pytest.importorskip('timm')
from timm.models.vision_transformer import VisionTransformer as TimmViT  # noqa: E402
from timm.models.vision_transformer import _load_weights as timm_load_npz  # noqa: E402

from tools.model_converters import vit2mmpretrain  # noqa: E402
from vpetl_mm.models.converters import (convert_jax_vit_npz, convert_timm_vit,  # noqa: E402
                                        split_jax_vit_npz, split_timm_vit)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'vit2mmpretrain.py')
IMG, PATCH, C, DEPTH, HEADS = 32, 8, 64, 2, 2


def make_timm_vit(num_classes=10, global_pool='token', seed=0):
    """A tiny timm ViT whose every parameter is random (no all-zero biases, no unit scales)."""
    torch.manual_seed(seed)
    model = TimmViT(img_size=IMG, patch_size=PATCH, embed_dim=C, depth=DEPTH, num_heads=HEADS,
                    num_classes=num_classes, qkv_bias=True, global_pool=global_pool)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def write_google_layout(model, prefix='', pre_logits=True):
    """Arrays of a timm ViT under the key names and shapes of Google's ``ViT-*.npz``.

    This inverts the published conversion: conv kernels HWIO, dense kernels ``(in, out)``,
    attention kernels ``(C, heads, head_dim)`` per q/k/v, output kernel ``(heads, head_dim, C)``.
    ``pre_logits`` (present in the ImageNet-21k release, unused by timm) is added as filler.
    """
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    head_dim = C // HEADS
    out = {
        'embedding/kernel': sd['patch_embed.proj.weight'].transpose(2, 3, 1, 0),
        'embedding/bias': sd['patch_embed.proj.bias'],
        'cls': sd['cls_token'],
        'Transformer/posembed_input/pos_embedding': sd['pos_embed'],
        'Transformer/encoder_norm/scale': sd['norm.weight'],
        'Transformer/encoder_norm/bias': sd['norm.bias'],
    }
    if 'head.weight' in sd:
        out['head/kernel'] = sd['head.weight'].T
        out['head/bias'] = sd['head.bias']
    if pre_logits:
        out['pre_logits/kernel'] = np.eye(C, dtype=np.float32)
        out['pre_logits/bias'] = np.zeros(C, dtype=np.float32)
    for i in range(DEPTH):
        blk, src = f'Transformer/encoderblock_{i}/', f'blocks.{i}.'
        attn = blk + 'MultiHeadDotProductAttention_1/'
        out[blk + 'LayerNorm_0/scale'] = sd[src + 'norm1.weight']
        out[blk + 'LayerNorm_0/bias'] = sd[src + 'norm1.bias']
        out[blk + 'LayerNorm_2/scale'] = sd[src + 'norm2.weight']
        out[blk + 'LayerNorm_2/bias'] = sd[src + 'norm2.bias']
        qkv_w, qkv_b = sd[src + 'attn.qkv.weight'], sd[src + 'attn.qkv.bias']
        for j, name in enumerate(('query', 'key', 'value')):
            rows = slice(j * C, (j + 1) * C)
            out[f'{attn}{name}/kernel'] = qkv_w[rows].T.reshape(C, HEADS, head_dim)
            out[f'{attn}{name}/bias'] = qkv_b[rows].reshape(HEADS, head_dim)
        out[attn + 'out/kernel'] = sd[src + 'attn.proj.weight'].T.reshape(HEADS, head_dim, C)
        out[attn + 'out/bias'] = sd[src + 'attn.proj.bias']
        for j in (0, 1):
            out[blk + f'MlpBlock_3/Dense_{j}/kernel'] = sd[src + f'mlp.fc{j + 1}.weight'].T
            out[blk + f'MlpBlock_3/Dense_{j}/bias'] = sd[src + f'mlp.fc{j + 1}.bias']
    return {prefix + k: np.ascontiguousarray(v) for k, v in out.items()}


def save_npz(path, arrays):
    np.savez(path, **arrays)
    return str(path)


def read_npz(path):
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def build_mmpretrain_vit(state_dict, out_type='cls_token', final_norm=True):
    """mmpretrain's ViT with the settings under which the conversion is exact; loads strictly."""
    pytest.importorskip('mmpretrain')
    from mmpretrain.models.backbones import VisionTransformer
    model = VisionTransformer(
        arch=dict(embed_dims=C, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=4 * C),
        img_size=IMG, patch_size=PATCH, qkv_bias=True, norm_cfg=dict(type='LN', eps=1e-6),
        final_norm=final_norm, out_type=out_type, init_cfg=None)
    model.load_state_dict(state_dict, strict=True)
    model.eval()  # not chained: mmpretrain's ViT.train() returns None
    return model


@pytest.mark.parametrize('num_classes', [10, 0])
@pytest.mark.parametrize('prefix', ['', 'opt/target/'])
def test_writer_produces_the_google_layout(tmp_path, num_classes, prefix):
    """timm's Google-npz loader reads the written file back into exactly the original weights."""
    model = make_timm_vit(num_classes)
    path = save_npz(tmp_path / 'vit.npz', write_google_layout(model, prefix))
    fresh = make_timm_vit(num_classes, seed=1)
    with torch.no_grad():
        for param in fresh.parameters():
            param.zero_()
    timm_load_npz(fresh, path)
    reference = model.state_dict()
    loaded = fresh.state_dict()
    assert loaded.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize('num_classes', [10, 0])
def test_both_converters_agree(tmp_path, num_classes):
    """npz and timm routes give the same tensors, float32 and contiguous; heads set aside."""
    model = make_timm_vit(num_classes)
    from_timm, dropped_timm = split_timm_vit(model.state_dict())
    from_npz, dropped_npz = split_jax_vit_npz(
        read_npz(save_npz(tmp_path / 'vit.npz', write_google_layout(model))))
    assert from_npz.keys() == from_timm.keys()
    assert len(from_timm) == 4 + DEPTH * 12 + 2
    for key, value in from_timm.items():
        assert value.dtype == torch.float32 and value.is_contiguous(), key
        assert from_npz[key].dtype == torch.float32 and from_npz[key].is_contiguous(), key
        assert torch.equal(from_npz[key], value), key
    head = ['head.bias', 'head.weight'] if num_classes else []
    assert sorted(dropped_timm) == head
    assert sorted(dropped_npz) == sorted(
        ['pre_logits/bias', 'pre_logits/kernel'] + (['head/bias', 'head/kernel'] if num_classes
                                                    else []))


def test_outputs_are_float32_copies():
    model = make_timm_vit()
    source = {k: v.half() for k, v in model.state_dict().items()}
    source['pos_embed'] = source['pos_embed'].transpose(1, 2).contiguous().transpose(1, 2)
    assert not source['pos_embed'].is_contiguous()
    out = convert_timm_vit(source)
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in out.values())
    plain = model.state_dict()
    converted = convert_timm_vit(plain)
    converted['cls_token'].add_(1)
    assert not torch.equal(converted['cls_token'], plain['cls_token'])


@pytest.mark.parametrize('source', ['npz', 'timm'])
@pytest.mark.parametrize('num_classes', [10, 0])
def test_mmpretrain_matches_timm_features(tmp_path, source, num_classes):
    """cls-token features after the final norm agree with timm's ``forward_features``."""
    model = make_timm_vit(num_classes)
    if source == 'npz':
        converted = convert_jax_vit_npz(
            read_npz(save_npz(tmp_path / 'vit.npz', write_google_layout(model))))
    else:
        converted = convert_timm_vit(model.state_dict())
    mm_model = build_mmpretrain_vit(converted)
    x = torch.randn(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model.forward_features(x)[:, 0]
        got = mm_model(x)[-1]
    assert got.shape == expected.shape == (3, C)
    assert (got - expected).abs().max().item() < 1e-5


def test_avg_pool_fc_norm_becomes_ln2():
    """timm's average-pooled variant (``fc_norm``, no final ``norm``) maps to ``ln2``."""
    model = make_timm_vit(global_pool='avg')
    converted = convert_timm_vit(model.state_dict())
    assert 'ln2.weight' in converted and 'ln1.weight' not in converted
    mm_model = build_mmpretrain_vit(converted, out_type='avg_featmap', final_norm=False)
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
        got = mm_model(x)[-1]
    assert (got - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize('fmt', ['npz', 'npz-opt-target', 'flat', 'model', 'state_dict'])
def test_cli_formats(tmp_path, capsys, fmt):
    """Every accepted input form gives a checkpoint that loads back with weights_only=True."""
    model = make_timm_vit()
    if fmt.startswith('npz'):
        prefix = 'opt/target/' if fmt == 'npz-opt-target' else ''
        src = save_npz(tmp_path / 'ViT-tiny.npz', write_google_layout(model, prefix))
    else:
        src = str(tmp_path / 'vit-tiny.pth')
        sd = model.state_dict()
        torch.save(sd if fmt == 'flat' else {fmt: sd}, src)
    out_dir = tmp_path / 'out'
    dst = str(out_dir / 'converted.pth')
    vit2mmpretrain.main([src, dst])
    printed = capsys.readouterr().out
    assert f'{len(convert_timm_vit(model.state_dict()))} tensors' in printed
    assert f'embed dims {C}, depth {DEPTH}' in printed
    assert 'head' in printed  # the dropped classifier is reported
    saved = torch.load(dst, map_location='cpu', weights_only=True)
    assert saved['meta'] == {'source': osp.basename(src), 'converter': 'vit2mmpretrain'}
    expected = convert_timm_vit(model.state_dict())
    assert saved['state_dict'].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(saved['state_dict'][key], value), key
    assert os.listdir(out_dir) == ['converted.pth']  # no temporary file left behind


def test_cli_runs_without_mmpretrain_or_the_package(tmp_path):
    """As a script, the tool needs only torch and numpy (toolboxes and ``vpetl_mm`` blocked)."""
    src = save_npz(tmp_path / 'ViT-tiny.npz', write_google_layout(make_timm_vit()))
    dst = str(tmp_path / 'converted.pth')
    blocker = ("import runpy, sys\n"
               "for name in ('mmpretrain', 'mmcv', 'mmengine', 'vpetl_mm', 'timm'):\n"
               "    sys.modules[name] = None\n"
               "sys.argv = sys.argv[1:]\n"
               "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = dict(os.environ, PYTHONPATH='')
    done = subprocess.run([sys.executable, '-c', blocker, TOOL, src, dst], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f'embed dims {C}, depth {DEPTH}' in done.stdout
    assert torch.load(dst, weights_only=True)['meta']['source'] == 'ViT-tiny.npz'
    helped = subprocess.run([sys.executable, TOOL, '--help'], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=300)
    assert helped.returncode == 0 and 'usage:' in helped.stdout and 'dst' in helped.stdout


def test_cli_reports_errors_and_writes_nothing(tmp_path, capsys):
    arrays = write_google_layout(make_timm_vit())
    del arrays['Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel']
    src = save_npz(tmp_path / 'broken.npz', arrays)
    dst = tmp_path / 'converted.pth'
    with pytest.raises(SystemExit) as exc:
        vit2mmpretrain.main([src, str(dst)])
    assert exc.value.code == 1
    assert ('missing key \'Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel\''
            in capsys.readouterr().err)
    assert not dst.exists() and os.listdir(tmp_path) == ['broken.npz']


def test_npz_errors_name_the_key():
    arrays = write_google_layout(make_timm_vit(), prefix='opt/target/')
    missing = dict(arrays)
    del missing['opt/target/Transformer/encoderblock_1/LayerNorm_2/scale']
    with pytest.raises(KeyError, match='opt/target/Transformer/encoderblock_1/LayerNorm_2/scale'):
        convert_jax_vit_npz(missing)
    # a whole block missing below the highest one
    gap = {k: v for k, v in arrays.items() if 'encoderblock_0/' not in k}
    with pytest.raises(KeyError, match='encoderblock_0/LayerNorm_0/scale'):
        convert_jax_vit_npz(gap)
    with pytest.raises(KeyError, match='embedding/kernel'):
        convert_jax_vit_npz({k: v for k, v in arrays.items() if 'embedding/kernel' not in k})
    extra = dict(arrays, **{'opt/target/Transformer/encoderblock_0/LayerScale_0/scale':
                            np.ones(C, np.float32)})
    with pytest.raises(ValueError, match='LayerScale_0/scale'):
        convert_jax_vit_npz(extra)


def test_timm_unknown_key_is_named():
    sd = dict(make_timm_vit().state_dict())
    sd['blocks.1.ls1.gamma'] = torch.ones(C)
    with pytest.raises(ValueError, match=r"'blocks\.1\.ls1\.gamma'"):
        convert_timm_vit(sd)
    sd = dict(make_timm_vit().state_dict(), reg_token=torch.zeros(1, 4, C))
    with pytest.raises(ValueError, match='reg_token'):
        convert_timm_vit(sd)

"""ViT converters: Google npz and timm layouts -> mmpretrain, cross-checked against timm."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch

timm = pytest.importorskip('timm')
from timm.models.vision_transformer import VisionTransformer as TimmViT  # noqa: E402
from timm.models.vision_transformer import _load_weights  # noqa: E402

from tools.model_converters import vit2mmpretrain  # noqa: E402
from vpetl_mm.models.converters import convert_jax_vit_npz, convert_timm_vit  # noqa: E402

C, DEPTH, HEADS = 64, 2, 2


def timm_vit():
    torch.manual_seed(0)
    model = TimmViT(img_size=32, patch_size=8, embed_dim=C, depth=DEPTH, num_heads=HEADS,
                    num_classes=10, qkv_bias=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))  # no zero or one left: every key matters
    return model.eval()


def to_npz_layout(model):
    """Write a timm ViT in the original Google checkpoint key layout."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out = {'embedding/kernel': sd['patch_embed.proj.weight'].transpose(2, 3, 1, 0),
           'embedding/bias': sd['patch_embed.proj.bias'], 'cls': sd['cls_token'],
           'Transformer/posembed_input/pos_embedding': sd['pos_embed'],
           'Transformer/encoder_norm/scale': sd['norm.weight'],
           'Transformer/encoder_norm/bias': sd['norm.bias'],
           'head/kernel': sd['head.weight'].T, 'head/bias': sd['head.bias']}
    hd = C // HEADS
    for i in range(DEPTH):
        b, t = f'Transformer/encoderblock_{i}/', f'blocks.{i}.'
        out[b + 'LayerNorm_0/scale'] = sd[t + 'norm1.weight']
        out[b + 'LayerNorm_0/bias'] = sd[t + 'norm1.bias']
        out[b + 'LayerNorm_2/scale'] = sd[t + 'norm2.weight']
        out[b + 'LayerNorm_2/bias'] = sd[t + 'norm2.bias']
        qkv_w = sd[t + 'attn.qkv.weight']
        qkv_b = sd[t + 'attn.qkv.bias']
        for j, name in enumerate(('query', 'key', 'value')):
            m = b + 'MultiHeadDotProductAttention_1/' + name
            out[m + '/kernel'] = qkv_w[j * C:(j + 1) * C].T.reshape(C, HEADS, hd)
            out[m + '/bias'] = qkv_b[j * C:(j + 1) * C].reshape(HEADS, hd)
        m = b + 'MultiHeadDotProductAttention_1/out'
        out[m + '/kernel'] = sd[t + 'attn.proj.weight'].T.reshape(HEADS, hd, C)
        out[m + '/bias'] = sd[t + 'attn.proj.bias']
        for j in (0, 1):
            out[b + f'MlpBlock_3/Dense_{j}/kernel'] = sd[t + f'mlp.fc{j + 1}.weight'].T
            out[b + f'MlpBlock_3/Dense_{j}/bias'] = sd[t + f'mlp.fc{j + 1}.bias']
    return out


def mmpretrain_vit(state_dict):
    pytest.importorskip('mmpretrain')
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(
        type='VisionTransformer',
        arch=dict(embed_dims=C, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=4 * C),
        img_size=32, patch_size=8, qkv_bias=True, norm_cfg=dict(type='LN', eps=1e-6),
        final_norm=True, out_type='cls_token', init_cfg=None))
    assert str(model.load_state_dict(state_dict, strict=True)) == '<All keys matched successfully>'
    model.eval()
    return model


@pytest.fixture
def npz_file(tmp_path):
    model = timm_vit()
    path = tmp_path / 'ViT-tiny.npz'
    np.savez(path, **to_npz_layout(model))
    return model, str(path)


def test_npz_writer_is_the_google_layout(npz_file):
    """timm's own npz loader reads the test file back into the same weights."""
    model, path = npz_file
    fresh = TimmViT(img_size=32, patch_size=8, embed_dim=C, depth=DEPTH, num_heads=HEADS,
                    num_classes=10, qkv_bias=True)
    _load_weights(fresh, path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=1e-7, msg=k)


@pytest.mark.parametrize('source', ['npz', 'timm'])
def test_converted_model_matches_timm(npz_file, source):
    model, path = npz_file
    if source == 'npz':
        with np.load(path) as npz:
            converted = convert_jax_vit_npz({k: npz[k] for k in npz.files})
    else:
        converted = convert_timm_vit(model.state_dict())
    mm = mmpretrain_vit(converted)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model.forward_features(x)[:, 0]
        out = mm(x)[-1]
    assert (out - ref).abs().max() < 1e-5


def test_cli_both_formats(npz_file, tmp_path):
    model, path = npz_file
    timm_path = tmp_path / 'timm.pth'
    torch.save({'model': model.state_dict()}, timm_path)
    outs = []
    for src in (path, str(timm_path)):
        dst = tmp_path / (osp.basename(src) + '.mm.pth')
        vit2mmpretrain.main([src, str(dst)])
        outs.append(torch.load(dst, weights_only=True)['state_dict'])
    assert outs[0].keys() == outs[1].keys()
    for k in outs[0]:
        torch.testing.assert_close(outs[0][k], outs[1][k], rtol=0, atol=1e-6, msg=k)


def test_errors(npz_file):
    model, path = npz_file
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    broken = copy.copy(data)
    broken.pop('Transformer/encoderblock_1/LayerNorm_2/scale')
    with pytest.raises(KeyError, match='encoderblock_1/LayerNorm_2/scale'):
        convert_jax_vit_npz(broken)
    sd = dict(model.state_dict(), **{'blocks.0.attn.rel_pos': torch.zeros(1)})
    with pytest.raises(ValueError, match='blocks.0.attn.rel_pos'):
        convert_timm_vit(sd)

"""VPT-shallow / VPT-deep: the official formula, every ViT family, Swin refused, round trip,
composition with LoRA."""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             batch, classifier_cfg,
                                                             pretrained_file)
from tests.test_models.test_specs_toolboxes import features, setup  # noqa: E402
from vpetl_mm.engine import trainable_state_dict  # noqa: E402


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def official_vpt(plain, x, prompts, deep):
    """The VPT code's forward: prompts after cls, kept through the blocks (deep: replaced
    before every block after the first), final norm, cls token."""
    tokens, _ = plain.patch_embed(x)
    tokens = torch.cat([plain.cls_token.expand(len(x), -1, -1), tokens], 1) + plain.pos_embed
    tokens = plain.pre_norm(tokens)
    length = prompts.shape[1]
    for i, layer in enumerate(plain.layers):
        p = prompts[i if deep else 0].expand(len(x), -1, -1)
        if i == 0:
            tokens = torch.cat([tokens[:, :1], p, tokens[:, 1:]], 1)
        elif deep:
            tokens = torch.cat([tokens[:, :1], p, tokens[:, 1 + length:]], 1)
        tokens = layer(tokens)
    return plain.ln1(tokens)[:, 0]


@pytest.mark.parametrize('kind', ['VPT-shallow', 'VPT-deep'])
def test_official_formula(tmp_path, kind):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, dict(type=kind, length=3), path))
    model.eval()
    method = model.backbone.peft.methods[kind.lower()]
    sets = 4 if kind == 'VPT-deep' else 1
    assert method.prompts.shape == (sets * 3, 32)
    bound = (6 / (3 * 8 * 8 + 32))**0.5
    assert method.prompts.abs().max() <= bound
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model.backbone(x)[-1]
        torch.testing.assert_close(out, official_vpt(plain, x, method.prompts.view(sets, 3, 32),
                                                     kind == 'VPT-deep'), rtol=0, atol=1e-5)
        assert (out - plain(x)[-1]).abs().max() > 1e-4  # the prompts are in the path


@pytest.mark.parametrize('kind', ['VPT-shallow', 'VPT-deep'])
def test_train_step_and_round_trip(tmp_path, kind):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(dict(TINY_VIT, out_type='featmap'), dict(type=kind, length=2), path)
    cfg['neck'] = dict(type='GlobalAveragePooling')
    model = MODELS.build(cfg)
    x = torch.randn(2, 3, 32, 32)
    assert model.backbone(x)[-1].shape == (2, 32, 4, 4)  # the grid output keeps its shape
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith('backbone.')} == {
        f'backbone.peft.methods.{kind.lower()}.prompts'}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    for n, p in model.named_parameters():
        assert (n in trainable) or torch.equal(p, before[n]), n
    assert not torch.equal(dict(model.named_parameters())[sorted(trainable)[-1]],
                           before[sorted(trainable)[-1]])
    fresh = MODELS.build(cfg)
    fresh.load_state_dict(trainable_state_dict(model), strict=False)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(x, mode='tensor'), fresh(x, mode='tensor'))


def test_composes_with_lora(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    model = MODELS.build(classifier_cfg(TINY_VIT, [dict(type='VPT-deep', length=2),
                                                   dict(type='LoRA', rank=2, targets=('q', 'v'))],
                                        path))
    methods = model.backbone.peft.methods
    assert list(methods) == ['vpt-deep', 'lora']
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert 'peft.methods.vpt-deep.prompts' in trainable
    assert any('.lora_' in n for n in trainable)
    assert all(n == 'peft.methods.vpt-deep.prompts' or '.lora_' in n for n in trainable)
    grads = set()
    for n, p in model.backbone.named_parameters():
        if p.requires_grad:
            p.register_hook(lambda g, n=n: grads.add(n) if g.abs().sum() > 0 else None)
    model.train()
    model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert 'peft.methods.vpt-deep.prompts' in grads and any('.lora_' in n for n in grads)


def test_swin_shallow_is_refused_deep_prompts_windows(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    with pytest.raises(TypeError, match='cannot take'):
        MODELS.build(classifier_cfg(TINY_SWIN, dict(type='VPT-shallow', length=2), path))
    model = MODELS.build(classifier_cfg(TINY_SWIN, dict(type='VPT-deep', length=2), path))
    method = model.backbone.peft.methods['vpt-deep']
    assert [tuple(p.shape) for p in method.window_prompts] == [(2, 16)] * 2 + [(2, 32)] * 2
    block = model.backbone.peft.spec.blocks[2]
    msa = block.attn.w_msa
    k = v = torch.randn(4, 2, 16, 16)  # (windows * B, heads, N, d) at width 32
    with torch.no_grad():
        k2, v2 = msa._vpetl_kv[0](k, v)
        qkv = msa.qkv(block.norm1(method.window_prompts[2]))  # the prompts as frozen tokens
        torch.testing.assert_close(k2[0, :, :2], qkv[:, 32:64].reshape(2, 2, 16).transpose(0, 1))
        torch.testing.assert_close(v2[3, :, :2], qkv[:, 64:].reshape(2, 2, 16).transpose(0, 1))
        assert torch.equal(k2[:, :, 2:], k)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    params = dict(model.named_parameters())
    for n, p in params.items():
        assert p.requires_grad or torch.equal(p, before[n]), n
    assert not torch.equal(params['backbone.peft.methods.vpt-deep.window_prompts.0'],
                           before['backbone.peft.methods.vpt-deep.window_prompts.0'])


@pytest.mark.parametrize('family', ['mmaction-vit', 'mmseg-vit'])
@pytest.mark.parametrize('kind', ['VPT-shallow', 'VPT-deep'])
def test_toolbox_vits(family, kind, tmp_path):
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type=kind, length=3))
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        out, ref = features(model.backbone, x), features(plain, x)
    assert out.shape == ref.shape and (out - ref).abs().max() > 1e-4
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, before[n]), n
    name = f'backbone.peft.methods.{kind.lower()}.prompts'
    assert not torch.equal(dict(model.named_parameters())[name], before[name])


@pytest.mark.parametrize('family', ['mmaction-swin3d', 'mmdet-swin'])
def test_windowed_toolbox_backbones_refused(family, tmp_path):
    _, build, _ = setup(family, tmp_path)
    with pytest.raises(TypeError, match='cannot take'):
        build(dict(type='VPT-shallow', length=2))


def test_deep_lengths_per_block(tmp_path):
    """NOAH's variable-length deep prompts: one length per block (0: none in that block)."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    lengths = [2, 0, 3, 1]
    model = MODELS.build(classifier_cfg(TINY_VIT, dict(type='VPT-deep', length=lengths), path))
    model.eval()
    prompts = model.backbone.peft.methods['vpt-deep'].prompts
    assert prompts.shape == (6, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, _ = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), tokens], 1) + plain.pos_embed
        start = 0
        for n, layer in zip(lengths, plain.layers):
            p = prompts[start:start + n].expand(2, -1, -1)
            start += n
            tokens = layer(torch.cat([tokens[:, :1], p, tokens[:, 1:]], 1))
            tokens = torch.cat([tokens[:, :1], tokens[:, 1 + n:]], 1)
        torch.testing.assert_close(model.backbone(x)[-1], plain.ln1(tokens)[:, 0], rtol=0,
                                   atol=1e-5)
    with pytest.raises(ValueError, match='one length per block'):
        MODELS.build(classifier_cfg(TINY_VIT, dict(type='VPT-deep', length=[1, 2]), path))
    with pytest.raises(ValueError, match='takes one length'):
        MODELS.build(classifier_cfg(TINY_VIT, dict(type='VPT-shallow', length=[1, 2]), path))

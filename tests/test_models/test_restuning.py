"""Res-Tuning-Bypass (the bypass formula, no activations inside the frozen blocks, training, the
round trip, its refusal on Swin) and Res-Tuning (identity at init, the parallel-tuner formula,
training on ViT / Swin / Video Swin, composition, clear errors)."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_lst import saved_bytes  # noqa: E402
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             batch, classifier_cfg,
                                                             pretrained_file)
from tests.test_models.checks import (assert_round_trip, moved,  # noqa: E402
                                      train_and_check_frozen)

BYPASS = dict(type='Res-Tuning-Bypass', length=4)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def test_formula(tmp_path):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, BYPASS, path))
    model.eval()
    rt = model.backbone.peft.methods['res-tuning-bypass']
    with torch.no_grad():
        for tuner in (*rt.laterals, *rt.verticals):
            tuner.up.weight.normal_(0, 0.1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, _ = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), tokens], 1) + plain.pos_embed
        b = tokens
        for i, layer in enumerate(plain.layers):
            tokens = layer(tokens)
            b = rt.laterals[i](tokens) + rt.verticals[i](b)
        torch.testing.assert_close(model.backbone(x)[-1], plain.ln1(b)[:, 0], rtol=1e-5,
                                   atol=1e-5)


def test_memory_training_round_trip(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(TINY_VIT, BYPASS, path)
    model = MODELS.build(cfg)
    model.train()
    x = torch.randn(2, 3, 32, 32)
    assert saved_bytes(model, x, True) == 0 and saved_bytes(model, x, False) > 0
    before, after = train_and_check_frozen(model, batch())
    assert moved(before, after, '.laterals.')
    assert_round_trip(model, MODELS.build(cfg), x)


def test_swin_refused(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    with pytest.raises(TypeError, match='changes width or length'):
        MODELS.build(classifier_cfg(TINY_SWIN, BYPASS, path))


# --- Res-Tuning: tuners parallel to the attention and the MLP ------------------------------------
def _perturb(model):
    """Trained-looking tuners: the zero-initialised halves made non-zero."""
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if '.restuning.' in name and ('values' in name or '.up.' in name
                                          or 'prompts' in name):
                p.normal_(0, 0.2)


def _reference(plain, model, x, mha):
    """The Res-Tuning forward written out on the plain mmpretrain ViT."""
    tokens, _ = plain.patch_embed(x)
    tokens = torch.cat([plain.cls_token.expand(x.shape[0], -1, -1), tokens], 1) + plain.pos_embed
    for layer, ours in zip(plain.layers, model.backbone.layers):
        tuners = ours.restuning
        z = layer.ln1(tokens)
        b, n, c = z.shape
        heads = layer.attn.num_heads
        d = c // heads
        q, k, v = layer.attn.qkv(z).reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
        out = torch.softmax(q @ k.transpose(-2, -1) / d**0.5, -1) @ v
        if mha == 'prefix':
            pk = tuners.mha.keys.reshape(-1, heads, d).transpose(0, 1)
            pv = tuners.mha.values.reshape(-1, heads, d).transpose(0, 1)
            out = out + torch.softmax(q @ pk.transpose(-2, -1) / d**0.5, -1) @ pv
        if mha == 'prompt':  # the prompts through norm1 and the frozen k / v projections
            _, pk, pv = layer.attn.qkv(layer.ln1(tuners.mha.prompts)).reshape(
                -1, 3, heads, d).permute(1, 2, 0, 3)
            out = out + torch.softmax(q @ pk.transpose(-2, -1) / d**0.5, -1) @ pv
        h = tokens + layer.attn.proj(out.transpose(1, 2).reshape(b, n, c))
        if mha == 'adapter':
            h = h + tuners.mha.up(F.gelu(tuners.mha.down(z)))
        z2 = layer.ln2(h)
        tokens = h + layer.ffn.layers(z2) + tuners.ffn.up(F.gelu(tuners.ffn.down(z2)))
    return plain.ln1(tokens)[:, 0]


def test_res_tuning_count():
    with torch.device('meta'):
        bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(type='Res-Tuning'),
                               backbone=dict(type='VisionTransformer', arch='b', img_size=224,
                                             init_cfg=None)))
    assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 377976


@pytest.mark.parametrize('mha', ['prefix', 'adapter', 'prompt'])
def test_res_tuning_identity_then_formula(mha, tmp_path):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(
        TINY_VIT, dict(type='Res-Tuning', mha=mha, length=3, bottleneck=4), path))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        start = model.backbone(x)[-1]
        if mha == 'prompt':  # prompts act from the start
            assert not torch.allclose(start, plain(x)[-1], atol=1e-4)
        else:  # adapters and prefixes start at zero
            assert torch.equal(start, plain(x)[-1])
        _perturb(model)
        expected = _reference(plain, model, x, mha)
        out = model.backbone(x)[-1]
    assert not torch.allclose(out, plain(x)[-1], atol=1e-3)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('backbone', [TINY_VIT, TINY_SWIN], ids=['vit', 'swin'])
def test_res_tuning_trains_round_trips_and_refuses_merge(backbone, tmp_path):
    _, path = pretrained_file(tmp_path, backbone)
    cfg = classifier_cfg(backbone, dict(type='Res-Tuning', length=3, bottleneck=4), path)
    model = MODELS.build(cfg)
    plain_out = model.backbone(torch.zeros(1, 3, 32, 32))[-1]
    before, after = train_and_check_frozen(model, batch(), steps=2)
    assert moved(before, after, '.restuning.mha.values')
    assert moved(before, after, '.restuning.ffn.up.')
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        assert not torch.allclose(model.backbone(torch.zeros(1, 3, 32, 32))[-1], plain_out)
    assert_round_trip(model, MODELS.build(cfg), x)
    with pytest.raises(TypeError, match='not mergeable'):
        model.backbone.peft.merge()


@pytest.mark.parametrize('other,tag', [(dict(type='LoRA', rank=2, targets=('q', 'v')), 'lora'),
                                       (dict(type='PrefixTuning', length=2, mid=4), '.prefix.')])
def test_res_tuning_composes(other, tag, tmp_path):
    """With LoRA (its deltas on q / v) and with prefix tuning (which shares the attention
    wrapper: keys / values and the per-head product on one attention)."""
    _, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(TINY_VIT, [dict(type='Res-Tuning', length=3, bottleneck=4), other],
                         path)
    model = MODELS.build(cfg)
    before, after = train_and_check_frozen(model, batch(), steps=2)
    assert moved(before, after, '.restuning.') and moved(before, after, tag)
    assert_round_trip(model, MODELS.build(cfg), torch.randn(2, 3, 32, 32))


def test_res_tuning_bad_settings_and_video_swin(tmp_path):
    for kwargs, match in ((dict(ffn='prefix'), 'ffn'), (dict(mha='lora'), 'mha'),
                          (dict(mha=None, ffn=None), 'tunes nothing'),
                          (dict(length=0), 'length')):
        with pytest.raises(ValueError, match=match):
            vpetl_mm.peft.ResTuning(**kwargs)
    pytest.importorskip('mmaction')
    from tests.test_models.test_specs_toolboxes import setup
    _, build, batch_fn = setup('mmaction-swin3d', tmp_path)
    with pytest.raises(TypeError, match='per-head attention'):
        build(dict(type='Res-Tuning'))
    model = build(dict(type='Res-Tuning', mha='adapter'))  # adapters work on every family
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        start = model.backbone(x)[-1]
    before, after = train_and_check_frozen(model, data, steps=2)
    assert moved(before, after, '.restuning.mha.up') and moved(before, after, '.restuning.ffn')
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model.backbone(x)[-1], start)


@pytest.mark.parametrize('family', ['mmaction-vit', 'mmseg-vit'])
def test_res_prompt_in_toolbox_vits(family, tmp_path):
    """Res-Prompt's tokens use the qkv map exactly as each attention computes it (mmaction
    assembles its bias from q_bias / v_bias, mmseg uses in_proj functionally), and it trains."""
    pytest.importorskip(family.split('-')[0])
    from tests.test_models.test_specs_toolboxes import setup
    _, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type='Res-Tuning', mha='prompt', length=3, bottleneck=4))
    data, x = batch_fn()
    spec = model.backbone.peft.spec
    seen = []
    site = spec.blocks[0].sites['qkv']
    site.add_output_transform(lambda inp, out: seen.append((inp, out)) or out)
    model.eval()
    with torch.no_grad():
        model.backbone(x)
        inp, out = seen[0]
        torch.testing.assert_close(site.frozen(inp), out, rtol=1e-6, atol=1e-6)
    site.remove_delta(site._transforms[-1])
    before, after = train_and_check_frozen(model, data, steps=2)
    assert moved(before, after, '.restuning.mha.prompts')

"""Res-Tuning-Bypass (the init, the bypass formula, no activations inside the frozen blocks, the
training, round trip, its refusal on Swin) and Res-Tuning (the init, the parallel-tuner formula,
training on ViT / Swin / Video Swin, composition, clear errors)."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import (assert_normal, assert_uniform, embed,  # noqa: E402
                                         fix_drop_path, saved_bytes, vit_b)
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             batch, classifier_cfg,
                                                             pretrained_file)
from tests.test_models.checks import (assert_round_trip, moved,  # noqa: E402
                                      train_and_check_frozen)

BYPASS = dict(type='Res-Tuning-Bypass', bottleneck=4)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def res_adapter(tuner, x):
    """The Res-Adapter branch from its tensors: ``up(GELU(down(x)))``."""
    z = F.gelu(F.linear(x, tuner.down.weight, tuner.down.bias))
    return F.linear(z, tuner.up.weight, tuner.up.bias)


@pytest.mark.parametrize('zero_init_last', [True, False])
def test_bypass_init(zero_init_last):
    """ms-swift's ResAdapter init: xavier-uniform weights, biases N(0, 1e-6); with
    ``zero_init_last`` the up projections (weight and bias) exactly zero."""
    rt = vit_b(dict(BYPASS, length=10, zero_init_last=zero_init_last)).peft.methods[
        'res-tuning-bypass']
    tuners = (*rt.laterals, *rt.verticals)
    assert len(tuners) == 24
    assert_uniform(torch.cat([t.down.weight.flatten() for t in tuners]), (6 / 778)**0.5)
    biases = [t.down.bias for t in tuners]
    if zero_init_last:
        assert all(not t.up.weight.any() and not t.up.bias.any() for t in tuners)
    else:
        assert_uniform(torch.cat([t.up.weight.flatten() for t in tuners]), (6 / 778)**0.5)
        biases += [t.up.bias for t in tuners]
    assert_normal(torch.cat(biases), 1e-6)


def test_formula(tmp_path):
    """Random tuners (every up projection and bias drawn): ``b_0`` = the block-0 input,
    ``b_i = y_i + A(y_i) + b_{i-1} + A'(b_{i-1})`` with Res-Adapters ``A = up GELU down``
    written out, the output ``LN(b_N)``."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, BYPASS, path))
    model.eval()
    rt = model.backbone.peft.methods['res-tuning-bypass']
    with torch.no_grad():
        for tuner in (*rt.laterals, *rt.verticals):
            for p in (tuner.up.weight, tuner.up.bias, tuner.down.bias):
                p.normal_(0, 0.3)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = embed(plain, x)
        b = tokens
        for i, layer in enumerate(plain.layers):
            tokens = layer(tokens)
            b = tokens + res_adapter(rt.laterals[i], tokens) + b + res_adapter(rt.verticals[i], b)
        out = model.backbone(x)[-1]
        torch.testing.assert_close(out, plain.ln1(b)[:, 0], rtol=1e-5, atol=1e-5)
        assert (out - plain(x)[-1]).abs().max() > 1e-2


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
    """Trained-looking tuners: every tuner tensor drawn (the zero-initialised halves and the
    near-zero biases included)."""
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if '.restuning.' in name:
                p.normal_(0, 0.3)


def _reference(plain, model, x, mha):
    """The Res-Tuning forward written out on the plain mmpretrain ViT (drop-path a fixed 1/2):
    ``h = x + DP(proj(attn + U_mha))`` for prefixes / prompts (their per-head attention
    over the learned keys / values alone, added to the attention product) or
    ``h = x + DP(Attn(LN1 x)) + U_mha(LN1 x)`` for an adapter, then
    ``y = h + DP(MLP(LN2 h)) + U_ffn(LN2 h)``; tuner tensors only, no tuner module called."""
    tokens = embed(plain, x)
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
        h = tokens + 0.5 * layer.attn.proj(out.transpose(1, 2).reshape(b, n, c))
        if mha == 'adapter':
            h = h + res_adapter(tuners.mha, z)
        z2 = layer.ln2(h)
        tokens = h + 0.5 * layer.ffn.layers(z2) + res_adapter(tuners.ffn, z2)
    return plain.ln1(tokens)[:, 0]


def test_res_tuning_init():
    """Prefix keys and prompts xavier-uniform over ``(L, C)``, prefix values exactly zero;
    adapters xavier-uniform ``down`` with N(0, 1e-6) bias and an exactly zero ``up``."""
    blocks = [m.restuning for m in vit_b(dict(type='Res-Tuning')).layers]
    assert_uniform(torch.cat([t.mha.keys.flatten() for t in blocks]), (6 / 778)**0.5)
    assert all(not t.mha.values.any() for t in blocks)
    adapters = [t.ffn for t in blocks]
    blocks = [m.restuning for m in vit_b(dict(type='Res-Tuning', mha='prompt')).layers]
    assert_uniform(torch.cat([t.mha.prompts.flatten() for t in blocks]), (6 / 778)**0.5)
    adapters += [m.restuning.mha for m in vit_b(dict(type='Res-Tuning', mha='adapter')).layers]
    assert_uniform(torch.cat([a.down.weight.flatten() for a in adapters]), (6 / 778)**0.5)
    assert_normal(torch.cat([a.down.bias for a in adapters]), 1e-6)
    assert all(not a.up.weight.any() and not a.up.bias.any() for a in adapters)


def test_res_tuning_count():
    with torch.device('meta'):
        bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(type='Res-Tuning'),
                               backbone=dict(type='VisionTransformer', arch='b', img_size=224,
                                             init_cfg=None)))
    assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 377976


@pytest.mark.parametrize('mha', ['prefix', 'adapter', 'prompt'])
def test_res_tuning_identity_then_formula(mha, tmp_path):
    """Adapters and prefixes start as the backbone, prompts do not; with every tuner tensor
    drawn, the output equals :func:`_reference` (tuners beside the drop-path of the branch
    they accompany, prefixes / prompts inside it, before the output projection)."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(
        TINY_VIT, dict(type='Res-Tuning', mha=mha, length=3, bottleneck=4), path))
    model.eval()
    fix_drop_path(plain, model.backbone)
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


@pytest.mark.parametrize('other,tag', [
    (dict(type='LoRA', rank=2, targets=('q', 'v')), 'lora'),
    (dict(type='PrefixTuning', length=2, bottleneck=4), '.prefix.')])
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

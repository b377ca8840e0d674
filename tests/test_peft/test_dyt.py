"""DyT: the init, the dispatch formula (plain and MoE adapters) written out in plain torch, real
token skipping at inference, the rate loss through its hook, and the toolbox families."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_normal, assert_uniform, embed, vit_b  # noqa: E402
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_VIT, batch,  # noqa: E402
                                                             classifier_cfg, pretrained_file)
from tests.test_models.test_specs_toolboxes import FAMILIES, features, setup  # noqa: E402
from vpetl_mm.engine.hooks import add_dyt_rate_loss  # noqa: E402
from vpetl_mm.peft.dyt import gumbel_sigmoid  # noqa: E402


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def build(tmp_path, **kwargs):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, dict(type='DyT', bottleneck=4, **kwargs), path))
    with torch.no_grad():  # a trained-looking adapter and dispatcher that skips some tokens
        for layer in model.backbone.layers:
            if kwargs.get('experts', 1) > 1:
                for p in (layer.dyt.moe.up_weight, layer.dyt.moe.up_bias,
                          layer.dyt.moe.down_bias, layer.dyt.moe.router.bias):
                    p.normal_(0, 0.3)
                layer.dyt.moe.router.weight.normal_(0, 0.5)
            else:
                for p in (layer.dyt.up.weight, layer.dyt.up.bias, layer.dyt.down.bias):
                    p.normal_(0, 0.3)
            layer.dyt.dispatcher.weight.normal_(0, 0.5)
            layer.dyt.dispatcher.bias.normal_(0, 0.1)
    return plain, model


def linear_adapter(mods, h):
    """The block's adapter from its tensors, before the scale: ``up(ReLU(down(h)))``."""
    z = F.relu(F.linear(h, mods.down.weight, mods.down.bias))
    return F.linear(z, mods.up.weight, mods.up.bias)


def moe_adapter(mods, h):
    """The MoE adapter from its tensors, before the scale: per sample
    ``alpha = softmax(router(mean_tokens h))`` merges the experts' weights and biases."""
    moe, out = mods.moe, []
    for sample in h:
        alpha = torch.softmax(F.linear(sample.mean(0), moe.router.weight, moe.router.bias), -1)
        down, down_bias, up, up_bias = (torch.einsum('e,e...->...', alpha, t) for t in (
            moe.down_weight, moe.down_bias, moe.up_weight, moe.up_bias))
        out.append(F.linear(F.relu(F.linear(sample, down, down_bias)), up, up_bias))
    return torch.stack(out)


def dyt_by_hand(plain, model, x, scale, adapter):
    """Eval-mode DyT on the plain ViT: per block ``h = x + Attn(LN1 x)``,
    ``m = [sigmoid(dispatcher(h_patch)) > 0.5]`` (cls: 1),
    ``y = h + m * MLP(LN2 h) + scale * adapter(h)``; the final norm's cls token and the
    number of patch tokens that went through the MLPs."""
    tokens, kept = embed(plain, x), 0
    for layer, ours in zip(plain.layers, model.backbone.layers):
        mods = ours.dyt
        h = tokens + layer.attn(layer.ln1(tokens))
        logits = F.linear(h[:, 1:], mods.dispatcher.weight, mods.dispatcher.bias).squeeze(-1)
        decision = (torch.sigmoid(logits) > 0.5).float()
        kept += int(decision.sum())
        mask = torch.cat([torch.ones(len(x), 1), decision], 1)[..., None]
        tokens = h + mask * layer.ffn.layers(layer.ln2(h)) + scale * adapter(mods, h)
    return plain.ln1(tokens)[:, 0], kept


def test_init():
    """The authors' init: dispatcher truncated-normal (std 0.02) with a zero bias, ``down``
    kaiming-uniform (a=sqrt 5: +-1/sqrt(C)) with a zero bias, ``up`` exactly zero; the MoE
    experts the same, the router truncated-normal (std 0.02) with a zero bias."""
    mods = [m.dyt for m in vit_b(dict(type='DyT')).layers]
    assert_normal(torch.cat([m.dispatcher.weight.flatten() for m in mods]), 0.02)
    assert_uniform(torch.cat([m.down.weight.flatten() for m in mods]), 768**-0.5)
    for m in mods:
        assert m.dropout.p == 0.1 and m.scale == 1.0
        for p in (m.dispatcher.bias, m.down.bias, m.up.weight, m.up.bias):
            assert not p.any()
    moes = [m.dyt.moe for m in vit_b(dict(type='DyT', experts=4)).layers]
    assert_normal(torch.cat([m.router.weight.flatten() for m in moes]), 0.02)
    assert_uniform(torch.cat([m.down_weight.flatten() for m in moes]), 768**-0.5)
    assert moes[0].down_weight.shape == (4, 64, 768) and moes[0].up_weight.shape == (4, 768, 64)
    for m in moes:
        for p in (m.router.bias, m.down_bias, m.up_weight, m.up_bias):
            assert not p.any()


def test_counts():
    for bottleneck, count in ((64, 1198860), (16, 313548)):
        with torch.device('meta'):
            bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(
                type='DyT', bottleneck=bottleneck), backbone=dict(
                    type='VisionTransformer', arch='b', img_size=224, init_cfg=None)))
        assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == count


def test_inference_formula_and_real_skipping(tmp_path):
    """Scale 0.7, random adapter, biases and dispatcher: the output equals
    :func:`dyt_by_hand`, and the MLPs' fc1 sees only the kept tokens."""
    plain, model = build(tmp_path, scale=0.7)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected, kept = dyt_by_hand(plain, model, x, 0.7, linear_adapter)
        dyt = model.backbone.peft.methods['dyt']
        dyt.activation_rate()  # reset
        seen = []
        for layer in model.backbone.layers:
            layer.ffn.layers[0][0].register_forward_pre_hook(  # fc1
                lambda m, a: seen.append(a[0].shape))
        out = model.backbone(x)[-1]
        assert (out - plain(x)[-1]).abs().max() > 1e-2
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert 0 < kept < 4 * 16 * 4  # some tokens skipped, some kept
    assert dyt.activation_rate() == pytest.approx(kept / (4 * 16 * 4))
    # fc1 received only the kept patch tokens and the 4 cls tokens, as rows
    assert all(len(shape) == 2 for shape in seen)
    assert sum(shape[0] for shape in seen) == kept + 4 * 4


def test_training_needs_the_rate_loss(tmp_path):
    _, model = build(tmp_path)
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(RuntimeError, match='DyTHook'):
        model.train_step(batch(), optim)
    assert add_dyt_rate_loss(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = set()
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.register_hook(lambda g, n=n: grads.add(n) if g.abs().sum() > 0 else None)
    log_vars = model.train_step(batch(), optim)
    assert 'loss_dyt_rate' in log_vars and torch.isfinite(log_vars['loss'])
    dyt = model.backbone.peft.methods['dyt']
    rate = torch.stack(dyt._rates).mean()
    torch.testing.assert_close(dyt.rate_loss(), 2.0 * (rate - 0.5)**2)
    assert any('.dyt.dispatcher.' in n for n in grads)  # straight-through gradient
    assert any('.dyt.up.' in n for n in grads)
    for n, p in model.named_parameters():
        assert p.requires_grad or torch.equal(p, before[n]), n
        if p.requires_grad:
            assert n.startswith('head.') or '.dyt.' in n, n


def test_gumbel_sigmoid_is_hard_with_soft_gradient():
    logits = torch.randn(1000, requires_grad=True)
    y = gumbel_sigmoid(logits, tau=5.0)
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    y.sum().backward()
    assert (logits.grad > 0).all()
    big = gumbel_sigmoid(torch.full((2000, ), 20.0), tau=1.0)
    assert big.mean() > 0.99


@pytest.mark.parametrize('family', list(FAMILIES))
def test_toolbox_families(family, tmp_path):
    plain, build_model, batch_fn = setup(family, tmp_path)
    model = build_model(dict(type='DyT', bottleneck=4))
    add_dyt_rate_loss(model)
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        assert features(model.backbone, x).shape == features(plain, x).shape
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss']) and 'loss_dyt_rate' in log_vars
    for n, p in model.named_parameters():
        assert p.requires_grad or torch.equal(p, before[n]), n


def test_trainable_round_trip(tmp_path):
    from vpetl_mm.engine import trainable_state_dict
    _, model = build(tmp_path)
    _, path = pretrained_file(tmp_path, TINY_VIT)
    torch.manual_seed(5)
    fresh = MODELS.build(classifier_cfg(TINY_VIT, dict(type='DyT', bottleneck=4), path))
    fresh.load_state_dict(trainable_state_dict(model), strict=False)
    model.eval()
    fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x, mode='tensor'), fresh(x, mode='tensor'))


def test_self_distillation(tmp_path):
    """distill=True: student loss + rate loss + complete-model (teacher) loss + KL, the teacher
    pass routing every token through the MLPs and leaving the rates of the student pass."""
    _, model = build(tmp_path, distill=True)
    add_dyt_rate_loss(model)
    dyt = model.backbone.peft.methods['dyt']
    fc1_rows = []
    model.backbone.layers[0].ffn.layers[0][0].register_forward_pre_hook(
        lambda m, a: fc1_rows.append(a[0].reshape(-1, a[0].shape[-1]).shape[0]))
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    log_vars = model.train_step(batch(), optim)
    for key in ('loss_dyt_rate', 'loss_dyt_teacher', 'loss_dyt_distill'):
        assert key in log_vars, key
    assert log_vars['loss_dyt_distill'] >= 0
    assert len(fc1_rows) == 2 and fc1_rows[1] == 4 * 17  # the teacher: all 17 tokens of 4 images
    assert len(dyt._rates) == 4 and not dyt.complete  # the student's rates, teacher mode off


def test_moe_adapter_counts_and_formula(tmp_path):
    """experts=E: per sample, alpha = softmax(router(token mean of h)) merges the E experts'
    weights and biases into one adapter; with scale 0.5 and every expert tensor drawn, the
    wrapped backbone equals :func:`dyt_by_hand` with :func:`moe_adapter`."""
    with torch.device('meta'):
        bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(
            type='DyT', bottleneck=64, experts=4), backbone=dict(
                type='VisionTransformer', arch='b', img_size=224, init_cfg=None)))
    assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 4804668
    plain, model = build(tmp_path, experts=3, scale=0.5)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected, kept = dyt_by_hand(plain, model, x, 0.5, moe_adapter)
        out = model.backbone(x)[-1]
        assert (out - plain(x)[-1]).abs().max() > 1e-2
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert 0 < kept < 4 * 16 * 4
    with pytest.raises(ValueError, match='experts'):
        vpetl_mm.peft.dyt.DyT(experts=0)


def test_moe_adapter_trains_in_the_classifier(tmp_path):
    """DyT with the MoE adapter trains through the rate-loss hook: the experts and the router
    get gradients and move, the frozen weights stay bit-identical, and the trainable-only state
    dict restores the same outputs."""
    from vpetl_mm.engine import trainable_state_dict
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(TINY_VIT, dict(type='DyT', bottleneck=4, experts=3), path)
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg))
    add_dyt_rate_loss(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapper = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                           lr=0.5))
    model.train()
    for _ in range(3):
        model.train_step(batch(), wrapper)
    moe = model.backbone.layers[0].dyt.moe
    for name in ('router.weight', 'up_weight', 'down_weight'):
        assert not torch.equal(moe.get_parameter(name),
                               before[f'backbone.layers.0.dyt.moe.{name}']), name
    for n, p in model.named_parameters():
        assert p.requires_grad or torch.equal(p, before[n]), n
    fresh = MODELS.build(copy.deepcopy(cfg))
    fresh.load_state_dict(trainable_state_dict(model), strict=False)
    model.eval()
    fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x, mode='tensor'), fresh(x, mode='tensor'))


def test_real_skipping_in_the_video_vit(tmp_path):
    """On mmaction's ViT (VideoMAE layout, 3-D token grid) DyT's skipped tokens really bypass
    the MLP at inference: its fc1 receives only the kept rows, as many as the activation rate
    says, and the recognizer's output still depends on the dispatcher's choices."""
    plain, build_model, batch_fn = setup('mmaction-vit', tmp_path)
    model = build_model(dict(type='DyT', bottleneck=4))
    dyt = model.backbone.peft.methods['dyt']
    with torch.no_grad():  # a dispatcher that keeps some tokens and skips others
        for p in dyt.parameters():
            p.normal_(0, 0.5)
    model.eval()
    seen = []
    for block in model.backbone.blocks:
        block.mlp.layers[0][0].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    _, x = batch_fn()
    dyt.activation_rate()  # reset
    with torch.no_grad():
        model.backbone(x)
    tokens = x.shape[0] * 2 * 4 * 4  # batch x (4 frames / tubelet 2) x 4 x 4 patches
    kept = sum(shape[0] for shape in seen)
    assert all(len(shape) == 2 for shape in seen)  # rows, not the padded sequence
    assert 0 < kept < tokens * len(model.backbone.blocks)
    assert dyt.activation_rate() == pytest.approx(kept / (tokens * len(model.backbone.blocks)))


def dyt_on_mmseg_vit(plain, wrapped, x):
    """Eval-mode DyT on mmseg's ViT by hand (``plain`` unwrapped, ``wrapped`` holding the DyT
    modules): each block as in :func:`dyt_by_hand`, the cls token always through the MLP; the
    maps of the ``out_indices`` blocks, ``(B, C, H, W)`` of every patch token (no final norm),
    and the number of patch tokens that went through the MLPs."""
    tokens, hw = plain.patch_embed(x)
    tokens = torch.cat([plain.cls_token.expand(len(x), -1, -1), tokens], dim=1)
    tokens = plain._pos_embeding(tokens, hw, plain.pos_embed)
    maps, kept = [], 0
    for i, (layer, ours) in enumerate(zip(plain.layers, wrapped.layers)):
        mods = ours.dyt
        h = layer.attn(layer.ln1(tokens), identity=tokens)
        logits = F.linear(h[:, 1:], mods.dispatcher.weight, mods.dispatcher.bias).squeeze(-1)
        decision = (logits > 0).float()
        kept += int(decision.sum())
        mask = torch.cat([torch.ones(len(x), 1), decision], 1)[..., None]
        tokens = h + mask * layer.ffn.layers(layer.ln2(h)) + mods.scale * linear_adapter(mods, h)
        if i in plain.out_indices:
            maps.append(tokens[:, 1:].transpose(1, 2).reshape(len(x), -1, *hw))
    return maps, kept


def test_real_skipping_in_the_vit_segmentor():
    """In the ADE20K config's segmentor (UperNet on mmseg's ViT, shrunk) DyT's skipped tokens
    really bypass the MLP at inference: fc1 receives only the kept patch tokens and the cls
    tokens, as rows. The maps of blocks 3, 5, 7 and 11 that MultiLevelNeck takes are those
    blocks' outputs by DyT's formula: every patch token stays in its map, a skipped one as
    ``h + s * adapter(h)``, as in the authors' segmentation backbone (no final norm)."""
    from tests.test_configs.test_dense_vit_configs import (build_tiny, config_path, seg_batch,
                                                          tiny_cfg)
    path = config_path('upernet', 'dyt')
    model = build_tiny(path)  # (in the mmseg scope)
    dyt = model.backbone.peft.methods['dyt']
    torch.manual_seed(1)
    with torch.no_grad():  # a trained-looking adapter, a dispatcher that skips some tokens
        for name, p in model.backbone.named_parameters():
            if '.dyt.' in name:
                p.normal_(0, 0.5 if 'dispatcher' in name else 0.3)
    from mmseg.registry import MODELS as SEG_MODELS
    plain = SEG_MODELS.build(tiny_cfg(path).backbone.backbone.to_dict())
    plain.load_state_dict(model.backbone.state_dict(), strict=False)
    model.eval()
    plain.eval()
    seen = []
    for layer in model.backbone.layers:
        layer.ffn.layers[0][0].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    x = torch.randn(2, 3, 64, 96)
    dyt.activation_rate()  # reset
    with torch.no_grad():
        maps = model.backbone(x)
        expected, kept = dyt_on_mmseg_vit(plain, model.backbone, x)
    assert [m.shape for m in maps] == [(2, 32, 4, 6)] * 4
    for ours, theirs in zip(maps, expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    patches = 2 * 4 * 6 * 12  # batch x grid x blocks
    assert all(len(shape) == 2 for shape in seen)
    assert sum(shape[0] for shape in seen) == kept + 2 * 12  # + the cls tokens
    assert 0 < kept < patches
    assert dyt.activation_rate() == pytest.approx(kept / patches)
    with torch.no_grad():
        out = model.test_step(seg_batch(64, 96))
    assert out[0].pred_sem_seg.data.shape == (1, 64, 96)

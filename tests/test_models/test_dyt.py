"""DyT: the dispatch formula, real token skipping at inference, the rate loss through its hook,
and the toolbox families."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
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
            layer.dyt.up.weight.normal_(0, 0.1)
            layer.dyt.dispatcher.weight.normal_(0, 0.5)
    return plain, model


def test_counts():
    for bottleneck, count in ((64, 1198860), (16, 313548)):
        with torch.device('meta'):
            bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(
                type='DyT', bottleneck=bottleneck), backbone=dict(
                    type='VisionTransformer', arch='b', img_size=224, init_cfg=None)))
        assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == count


def test_inference_formula_and_real_skipping(tmp_path):
    plain, model = build(tmp_path)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        tokens, _ = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(4, -1, -1), tokens], 1) + plain.pos_embed
        kept = 0
        for layer, ours in zip(plain.layers, model.backbone.layers):
            h = tokens + layer.attn(layer.ln1(tokens))
            decision = (ours.dyt.dispatcher(h[:, 1:]).squeeze(-1) > 0).float()
            kept += int(decision.sum())
            mask = torch.cat([torch.ones(4, 1), decision], 1)[..., None]
            adapter = ours.dyt.up(F.relu(ours.dyt.down(h)))
            tokens = h + mask * layer.ffn.layers(layer.ln2(h)) + adapter
        expected = plain.ln1(tokens)[:, 0]
        dyt = model.backbone.peft.methods['dyt']
        dyt.activation_rate()  # reset
        seen = []
        for layer in model.backbone.layers:
            layer.ffn.layers[0][0].register_forward_pre_hook(  # fc1
                lambda m, a: seen.append(a[0].shape))
        out = model.backbone(x)[-1]
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
    """experts=E: per sample, alpha = softmax(router(token mean)); the merged adapter equals the
    alpha-weighted sum of the E expert adapters' outputs (it is linear in the weights up to the
    ReLU, which sees the merged down projection); zero up projections start at exactly zero."""
    with torch.device('meta'):
        bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(
            type='DyT', bottleneck=64, experts=4), backbone=dict(
                type='VisionTransformer', arch='b', img_size=224, init_cfg=None)))
    assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 4804668
    from vpetl_mm.peft.dyt import DyTBlockModules
    torch.manual_seed(0)
    mods = DyTBlockModules(8, 3, scale=0.5, dropout=0.0, experts=3).eval()
    h = torch.randn(2, 5, 8)
    assert torch.equal(mods.adapter(h), torch.zeros(2, 5, 8))  # zero-initialised up
    moe = mods.moe
    with torch.no_grad():
        for p in (moe.up_weight, moe.up_bias, moe.down_bias, moe.router.weight):
            p.normal_(0, 0.5)
    expected = []
    for b in range(2):
        alpha = torch.softmax(h[b].mean(0) @ moe.router.weight.T + moe.router.bias, -1)
        down = sum(alpha[e] * moe.down_weight[e] for e in range(3))
        down_bias = sum(alpha[e] * moe.down_bias[e] for e in range(3))
        up = sum(alpha[e] * moe.up_weight[e] for e in range(3))
        up_bias = sum(alpha[e] * moe.up_bias[e] for e in range(3))
        expected.append(0.5 * (F.relu(h[b] @ down.T + down_bias) @ up.T + up_bias))
    torch.testing.assert_close(mods.adapter(h), torch.stack(expected), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected[0], torch.zeros_like(expected[0]))
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

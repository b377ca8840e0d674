"""LST: the ladder formula, no activations kept inside the frozen blocks, training, refusal on
Swin, the toolbox ViTs and the round trip."""
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
from tests.test_models.checks import (assert_round_trip, moved,  # noqa: E402
                                      train_and_check_frozen)

LST = dict(type='LST', reduction=4, num_heads=2)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def test_formula(tmp_path):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier_cfg(TINY_VIT, LST, path))
    model.eval()
    lst = model.backbone.peft.methods['lst']
    with torch.no_grad():
        lst.gates.normal_()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, _ = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), tokens], 1) + plain.pos_embed
        h = lst.down(tokens)
        for i, layer in enumerate(plain.layers):
            tokens = layer(tokens)
            g = torch.sigmoid(lst.gates[i] / 0.1)
            h = lst.side[i](g * h + (1 - g) * lst.ladders[i](tokens))
        expected = plain.ln1(lst.up(h))[:, 0]
        torch.testing.assert_close(model.backbone(x)[-1], expected, rtol=1e-5, atol=1e-5)


def saved_bytes(model, x, inside_blocks):
    """Bytes autograd saves for backward during a forward, inside the blocks' attention and
    MLP (``inside_blocks``) or anywhere else."""
    state = dict(inside=False, bytes=0)

    def pack(t):
        if state['inside'] == inside_blocks:
            state['bytes'] += t.numel() * t.element_size()
        return t

    handles = []
    for layer in model.backbone.layers:
        for sub in (layer.ln1, layer.attn, layer.ln2, layer.ffn):
            handles.append(sub.register_forward_pre_hook(lambda m, a: state.update(inside=True)))
            handles.append(sub.register_forward_hook(
                lambda m, a, o: state.update(inside=False)))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.backbone(x)[-1].sum()
    for h in handles:
        h.remove()
    return state['bytes']


def test_backbone_keeps_no_activations(tmp_path):
    """The frozen blocks record nothing for backward (their work runs with autograd off);
    the ladders' taps and the side network do. An adapter inside the blocks does record."""
    _, path = pretrained_file(tmp_path, TINY_VIT)
    lst = MODELS.build(classifier_cfg(TINY_VIT, LST, path))
    adapter = MODELS.build(classifier_cfg(TINY_VIT, dict(type='Adapter', bottleneck=4), path))
    x = torch.randn(2, 3, 32, 32)
    lst.train()
    adapter.train()
    assert saved_bytes(lst, x, True) == 0
    assert saved_bytes(lst, x, False) > 0  # the ladder taps and the side network
    assert saved_bytes(adapter, x, True) > 0
    assert torch.is_grad_enabled()  # the caller's grad mode is back


def test_train_step_and_round_trip(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(TINY_VIT, LST, path)
    model = MODELS.build(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = set()
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.register_hook(lambda g, n=n: grads.add(n) if g.abs().sum() > 0 else None)
    model.train()
    log_vars = model.train_step(batch(), OptimWrapper(torch.optim.SGD(model.parameters(),
                                                                      lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(('head.', 'backbone.peft.methods.lst.')) for n in trainable)
    assert {n for n in grads if '.ladders.' in n} and {n for n in grads if '.side.' in n}
    for n, p in model.named_parameters():
        assert p.requires_grad or torch.equal(p, before[n]), n
    assert_round_trip(model, MODELS.build(cfg), torch.randn(2, 3, 32, 32))


def test_errors(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    with pytest.raises(TypeError, match='changes width or length'):
        MODELS.build(classifier_cfg(TINY_SWIN, LST, path))
    _, path = pretrained_file(tmp_path, TINY_VIT)
    with pytest.raises(ValueError, match='does not divide width 32'):
        MODELS.build(classifier_cfg(TINY_VIT, dict(type='LST', reduction=5), path))


@pytest.mark.parametrize('family', ['mmaction-vit', 'mmseg-vit'])
def test_toolbox_vits(family, tmp_path):
    plain, build_model, batch_fn = setup(family, tmp_path)
    model = build_model(LST)
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        assert features(model.backbone, x).shape == features(plain, x).shape
    before, after = train_and_check_frozen(model, data)
    assert moved(before, after, '.lst.side.')

"""SCT and GPS: the selection pass, the formula, only selected elements train, merge, the
trainable-only round trip, and their errors."""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             classifier_cfg, pretrained_file)
from vpetl_mm.engine import trainable_state_dict  # noqa: E402
from vpetl_mm.models import get_peft_state  # noqa: E402
from vpetl_mm.peft.selection import supervised_contrastive_loss  # noqa: E402

BACKBONES = dict(vit=TINY_VIT, swin=TINY_SWIN)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def build(tmp_path, backbone, method):
    plain, path = pretrained_file(tmp_path, BACKBONES[backbone])
    model = MODELS.build(classifier_cfg(BACKBONES[backbone], method, path))
    model.init_weights()
    plain.eval()
    return plain, model


def batches(n=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        labels = torch.randint(0, 5, (size, ), generator=g)
        out.append(dict(inputs=torch.randn(size, 3, 32, 32, generator=g),
                        data_samples=[DataSample().set_gt_label(int(c)) for c in labels]))
    return out


def method_of(model):
    return next(iter(get_peft_state(model)[0].methods.values()))


def train_step(model, data, optim=None):
    model.train()
    optim = optim or OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    return model.train_step(dict(inputs=data['inputs'], data_samples=data['data_samples']),
                            optim)


# --- SCT -------------------------------------------------------------------------------------
def reference_scores(plain, data, backbone):
    """Class-aware importance per block from the plain backbone: mean over classes of each
    channel's L2 norm over (samples x patch tokens) at the input of norm2."""
    sq, hooks = {}, []
    blocks = (plain.layers if backbone == 'vit'
              else [b for s in plain.stages for b in s.blocks])
    for i, blk in enumerate(blocks):
        norm2 = blk.ln2 if backbone == 'vit' else blk.norm2
        hooks.append(norm2.register_forward_pre_hook(
            lambda m, a, i=i: sq.setdefault(i, []).append(a[0])))
    labels = []
    with torch.no_grad():
        for d in data:
            plain(d['inputs'])
            labels.append(torch.tensor([int(s.gt_label) for s in d['data_samples']]))
    for h in hooks:
        h.remove()
    labels = torch.cat(labels)
    scores = []
    for i in range(len(blocks)):
        feats = torch.cat(sq[i])  # (S, N, C)
        feats = feats[:, 1:] if backbone == 'vit' else feats
        per_class = [feats[labels == c].pow(2).sum((0, 1)).sqrt() for c in labels.unique()]
        scores.append(torch.stack(per_class).mean(0))
    return scores


@pytest.mark.parametrize('backbone', list(BACKBONES))
def test_sct_selection_formula_and_training(tmp_path, backbone):
    plain, model = build(tmp_path, backbone, dict(type='SCT', top_n=4))
    sct = method_of(model)
    x = torch.randn(2, 3, 32, 32)
    model.train()
    with pytest.raises(RuntimeError, match='PEFTSelectionHook'):
        model.backbone(x)
    data = batches()
    summary = sct.select(model, iter(data))
    assert 'SCT picked 4 channels' in summary
    adapters = [b.module.sct for b in get_peft_state(model)[0].spec.blocks]
    for adapter, score in zip(adapters, reference_scores(plain, data, backbone)):
        assert torch.equal(adapter.index, torch.topk(score, 4).indices.sort().values)

    # formula: h[..., idx] += W h[..., idx] + b after the attention residual (norm2 input)
    for adapter in adapters:
        torch.nn.init.normal_(adapter.bias, std=0.1)
    ref_blocks = (plain.layers if backbone == 'vit'
                  else [b for s in plain.stages for b in s.blocks])
    for blk, adapter in zip(ref_blocks, adapters):
        norm2 = blk.ln2 if backbone == 'vit' else blk.norm2

        def hook(m, args, a=adapter):
            h = args[0]
            h[..., a.index] = h[..., a.index] + h[..., a.index] @ a.weight.t() + a.bias
        norm2.register_forward_pre_hook(hook)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x)[-1], plain(x)[-1], rtol=0, atol=1e-6)

    # a step trains only the SCT maps (and the head)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert torch.isfinite(train_step(model, data[0])['loss'])
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, before[n]), n
        else:
            assert n.startswith('head.') or '.sct.' in n, n

    # trainable-only round trip restores the selection and the outputs
    saved = trainable_state_dict(model)
    assert any(k.endswith('.sct.index') for k in saved)
    _, fresh = build(tmp_path, backbone, dict(type='SCT', top_n=4))
    assert not method_of(fresh).is_selected()
    fresh.load_state_dict(saved, strict=False)
    assert method_of(fresh).is_selected()
    model.eval()
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh.backbone(x)[-1], model.backbone(x)[-1], rtol=0, atol=0)


def test_sct_mlp_merge_is_exact(tmp_path):
    _, model = build(tmp_path, 'vit', dict(type='SCT', top_n=4, mode='mlp'))
    sct = method_of(model)
    assert sct.mergeable
    sct.select(model, iter(batches()))
    for b in get_peft_state(model)[0].spec.blocks:
        torch.nn.init.normal_(b.module.sct.weight, std=0.2)
        torch.nn.init.normal_(b.module.sct.bias, std=0.2)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        unmerged = model.backbone(x)[-1]
        get_peft_state(model)[0].merge()
        merged = model.backbone(x)[-1]
    assert (merged - unmerged).abs().max() < 1e-5
    assert not any('.sct.' in k for k in model.state_dict())


def test_sct_errors(tmp_path):
    with pytest.raises(ValueError, match="mode='qkv'"):
        build(tmp_path, 'vit', dict(type='SCT', mode='qkv'))
    with pytest.raises(ValueError, match='exceeds the 32 channels'):
        build(tmp_path, 'vit', dict(type='SCT', top_n=33))
    _, model = build(tmp_path, 'vit', dict(type='SCT', top_n=4))
    with pytest.raises(TypeError, match='cannot be merged'):
        get_peft_state(model)[0].methods['sct'].merge()
    unlabeled = [dict(inputs=torch.randn(2, 3, 32, 32), data_samples=[DataSample()] * 2)]
    with pytest.raises(TypeError, match='gt_label'):
        method_of(model).select(model, iter(unlabeled))


# --- GPS -------------------------------------------------------------------------------------
def test_supervised_contrastive_loss():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    same = supervised_contrastive_loss(feats, torch.tensor([0, 0, 1, 1]))
    crossed = supervised_contrastive_loss(feats, torch.tensor([0, 1, 0, 1]))
    assert same < crossed  # classes that cluster have the lower loss
    z = torch.nn.functional.normalize(feats, dim=1)
    logits = z @ z.t() / 0.07
    expected = -(logits[0, 1] - torch.logsumexp(logits[0, [1, 2, 3]], 0))
    single = supervised_contrastive_loss(feats[:3], torch.tensor([0, 0, 1]))
    # anchors 0 and 1 have one positive each, anchor 2 none
    expected_1 = -(logits[1, 0] - torch.logsumexp(logits[1, [0, 2]], 0))
    exp0 = -(logits[0, 1] - torch.logsumexp(logits[0, [1, 2]], 0))
    torch.testing.assert_close(single, (exp0 + expected_1) / 2)
    assert expected > 0


@pytest.mark.parametrize('backbone', list(BACKBONES))
def test_gps_selects_and_trains_only_selected_entries(tmp_path, backbone):
    _, model = build(tmp_path, backbone, dict(type='GPS', connections=2))
    gps = method_of(model)
    weights = [w for w, _ in gps._weights]
    with pytest.raises(RuntimeError, match='PEFTSelectionHook'):
        train_step(model, batches(1)[0])
    for p in model.parameters():
        p.grad = None
    assert 'GPS selected 2 input(s) per neuron' in gps.select(model, iter(batches()))
    for i, w in enumerate(weights):
        idx = getattr(gps, f'connections_{i}')
        assert idx.shape == (w.shape[0], 2) and (idx >= 0).all()
        assert (idx < w[0].numel()).all()
        assert len({tuple(r) for r in idx.sort(1).values.tolist()}) >= 1
        assert (idx[:, 0] != idx[:, 1]).all()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0))
    for data in batches(2, seed=3):
        assert torch.isfinite(train_step(model, data, optim)['loss'])
    named = dict(model.named_parameters())
    ids = {id(w): i for i, w in enumerate(weights)}
    bias_ids = {id(b) for b in gps._biases}
    moved_weights = 0
    for n, p in named.items():
        if id(p) in ids:
            i = ids[id(p)]
            allowed = torch.zeros(p.shape[0], p[0].numel(), dtype=torch.bool)
            allowed.scatter_(1, getattr(gps, f'connections_{i}'), True)
            changed = (p != before[n]).reshape(p.shape[0], -1)
            assert not (changed & ~allowed).any(), f'unselected entries of {n} moved'
            moved_weights += int(changed.sum())
        elif id(p) not in bias_ids and not n.startswith('head.'):
            assert torch.equal(p, before[n]), f'{n} is not tuned by GPS but moved'
    assert moved_weights > 0
    assert any(not torch.equal(named[n], before[n]) for n, p in named.items()
               if id(p) in bias_ids)
    # merge leaves the weights and drops the masking hooks
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        unmerged = model.backbone(x)[-1]
        get_peft_state(model)[0].merge()
        torch.testing.assert_close(model.backbone(x)[-1], unmerged, rtol=0, atol=0)


def test_gps_refuses_weight_decay_and_counts(tmp_path):
    _, model = build(tmp_path, 'vit', dict(type='GPS'))
    gps = method_of(model)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05))
    with pytest.raises(ValueError, match='weight_decay=0.05'):
        gps.check_optimizer(optim)
    gps.check_optimizer(OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3)))
    # tiny ViT: per block 96 + 32 + 64 + 32 rows, patch embedding 32; weights and their biases
    assert gps.tuned_elements() == 2 * (4 * (96 + 32 + 64 + 32) + 32)


def test_gps_vit_b16_count():
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=dict(
            type='VisionTransformer', arch='b', img_size=224, patch_size=16, init_cfg=None),
            method=dict(type='GPS')))
    assert bb.peft.methods['gps'].tuned_elements() == 167424

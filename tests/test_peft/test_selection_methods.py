"""SCT and GPS: the selection pass, the formula, only selected elements train, merge, the
trainable-only round trip, and their errors."""

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


@pytest.mark.parametrize('mode', ['attn', 'mlp'])
def test_sct_picks_largest_class_aware_scores(tmp_path, mode):
    """A constructed case. With the attention and MLP outputs zeroed and no position embedding,
    every block sees the patch tokens ``a_b * U[y_b]`` of sample ``b`` (where SCT scores: the
    attention residual, or the block output), so the class-aware score is known by hand. The
    frequent class 0 is strong in channels 0-3, the rare classes 1 and 2 in channels 4-7, and
    the cls token (to be left out) is huge in channels 8-11: the largest class-aware scores are
    channels 4-7, while the smallest scores, the class-agnostic norm and a score counting the
    cls token each pick other channels."""
    _, model = build(tmp_path, 'vit', dict(type='SCT', top_n=4, mode=mode))
    vit = model.backbone
    u = 0.1 * torch.rand(3, 32, generator=torch.Generator().manual_seed(0))  # (class, channel)
    u[0, 0:4] = 2.5
    u[1:, 4:8] = 4.0
    with torch.no_grad():
        for layer in vit.layers:
            for linear in (layer.attn.proj, layer.ffn.layers[1]):
                linear.weight.zero_()
                linear.bias.zero_()
        vit.pos_embed.zero_()
        vit.cls_token.zero_()
        vit.cls_token[..., 8:12] = 100.0
        # an 8 x 8 patch of image channel k filled with a becomes the token a * u[k]
        vit.patch_embed.projection.bias.zero_()
        vit.patch_embed.projection.weight.copy_(u.t()[:, :, None, None].expand(-1, -1, 8, 8) / 64)
    labels = torch.tensor([0, 0, 0, 1, 0, 0, 0, 2])
    amps = torch.tensor([1.0, 0.9, 1.1, 1.0, 1.0, 1.1, 0.9, 1.0])
    images = torch.zeros(8, 3, 32, 32)
    images[torch.arange(8), labels] = amps[:, None, None]
    data = [dict(inputs=images[i:i + 4],
                 data_samples=[DataSample().set_gt_label(int(c)) for c in labels[i:i + 4]])
            for i in (0, 4)]
    method_of(model).select(model, iter(data))

    patches = (amps[:, None] * u[labels])[:, None].expand(-1, 16, -1)  # (B, 16 tokens, C)
    cls = vit.cls_token.detach().reshape(1, 1, 32).expand(8, -1, -1)

    def class_aware(tokens):
        """Mean over classes of each channel's L2 norm over the class's samples and tokens."""
        return torch.stack([tokens[labels == c].pow(2).sum((0, 1)).sqrt()
                            for c in range(3)]).mean(0)

    def top4(score, largest=True):
        return score.topk(4, largest=largest).indices.sort().values.tolist()

    expected = top4(class_aware(patches))
    assert expected == [4, 5, 6, 7]
    assert top4(class_aware(patches), largest=False) != expected
    assert top4(patches.pow(2).sum((0, 1)).sqrt()) == [0, 1, 2, 3]  # class-agnostic norm
    assert top4(class_aware(torch.cat([cls, patches], 1))) == [8, 9, 10, 11]  # cls counted
    for block in get_peft_state(model)[0].spec.blocks:
        assert block.module.sct.index.tolist() == expected, block.index


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
    z = torch.nn.functional.normalize(feats, dim=1)
    logits = z @ z.t() / 0.07

    def term(anchor, positives, others):
        """``-mean_p log softmax`` of the anchor's positives among its other samples."""
        log_prob = logits[anchor] - torch.logsumexp(logits[anchor, others], 0)
        return -log_prob[positives].mean()

    same = supervised_contrastive_loss(feats, torch.tensor([0, 0, 1, 1]))
    torch.testing.assert_close(same, (term(0, [1], [1, 2, 3]) + term(1, [0], [0, 2, 3]) +
                                      term(2, [3], [0, 1, 3]) + term(3, [2], [0, 1, 2])) / 4)
    crossed = supervised_contrastive_loss(feats, torch.tensor([0, 1, 0, 1]))
    torch.testing.assert_close(crossed, (term(0, [2], [1, 2, 3]) + term(1, [3], [0, 2, 3]) +
                                         term(2, [0], [0, 1, 3]) + term(3, [1], [0, 1, 2])) / 4)
    assert same < crossed  # classes that cluster have the lower loss
    # anchors 0 and 1 have one positive each, anchor 2 none (left out of the mean)
    single = supervised_contrastive_loss(feats[:3], torch.tensor([0, 0, 1]))
    torch.testing.assert_close(single, (term(0, [1], [1, 2]) + term(1, [0], [0, 2])) / 2)
    # two positives per anchor: their log-probabilities are averaged; anchor 3 has none
    triple = supervised_contrastive_loss(feats, torch.tensor([0, 0, 0, 1]))
    torch.testing.assert_close(triple, (term(0, [1, 2], [1, 2, 3]) + term(1, [0, 2], [0, 2, 3]) +
                                        term(2, [0, 1], [0, 1, 3])) / 3)
    assert supervised_contrastive_loss(feats, torch.arange(4)) == 0  # no positive at all


def reference_gps_scores(plain, model, weights, data):
    """``|sum over batches of dL/dW|`` per GPS weight, as ``(rows, inputs)``, computed on the
    plain backbone (its pooled last output) with the supervised contrastive loss."""
    names = {id(p): n for n, p in model.backbone.named_parameters()}
    params = dict(plain.named_parameters())
    refs = [params[names[id(w)]] for w in weights]
    totals = [torch.zeros_like(w) for w in refs]
    for d in data:
        feats = plain(d['inputs'])[-1]
        feats = feats.flatten(2).mean(-1) if feats.dim() > 2 else feats  # Swin: the neck's GAP
        labels = torch.tensor([int(s.gt_label) for s in d['data_samples']])
        grads = torch.autograd.grad(supervised_contrastive_loss(feats, labels), refs)
        for total, g in zip(totals, grads):
            total += g
    return [t.abs().reshape(t.shape[0], -1) for t in totals]


@pytest.mark.parametrize('backbone', list(BACKBONES))
def test_gps_selects_and_trains_only_selected_entries(tmp_path, backbone):
    plain, model = build(tmp_path, backbone, dict(type='GPS', connections=2))
    gps = method_of(model)
    weights = list(gps._weights)
    with pytest.raises(RuntimeError, match='PEFTSelectionHook'):
        train_step(model, batches(1)[0])
    for p in model.parameters():
        p.grad = None
    assert 'GPS selected 2 input(s) per neuron' in gps.select(model, iter(batches()))
    scores = reference_gps_scores(plain, model, weights, batches())
    for i, (w, score) in enumerate(zip(weights, scores)):
        idx = getattr(gps, f'connections_{i}')
        assert idx.shape == (w.shape[0], 2) and (idx >= 0).all()
        assert (idx < w[0].numel()).all()
        assert (idx[:, 0] != idx[:, 1]).all()
        # per row, the two inputs with the largest |gradient| (up to rounding of near-ties)
        second = torch.topk(score, 2, dim=1).values[:, 1]
        picked = score.gather(1, idx).min(1).values
        assert (picked >= second * (1 - 1e-4)).all(), f'weight {i}'
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


class GradientProbe(torch.nn.Module):
    """Stands in for the classifier in GPS's selection pass: its pooled features are
    ``base + s * direction`` with ``s = sum_i <coef_i, W_i>``, so the gradient of any loss of
    them with respect to each tuned weight ``W_i`` is ``dL/ds * coef_i``."""

    def __init__(self, weights, coefs, base, direction):
        super().__init__()
        self.weights, self.coefs = weights, coefs
        self.base, self.direction = base, direction

    def extract_feat(self, inputs):
        s = sum((w * c).sum() for w, c in zip(self.weights, self.coefs))
        return self.base + s * self.direction


def test_gps_picks_largest_gradient_magnitudes(tmp_path):
    """A constructed case: the gradient of every tuned weight is a known coefficient tensor
    (distinct integer magnitudes shuffled per row, random signs) times one common factor. Per
    row, GPS must keep the two inputs of largest magnitude, not the smallest nor the largest
    signed gradients."""
    _, model = build(tmp_path, 'vit', dict(type='GPS', connections=2))
    gps = method_of(model)
    weights = list(gps._weights)
    g = torch.Generator().manual_seed(0)
    coefs = []
    for w in weights:
        rows, inputs = w.shape[0], w[0].numel()
        mags = torch.stack([torch.randperm(inputs, generator=g) + 1.0 for _ in range(rows)])
        signs = torch.randint(0, 2, (rows, inputs), generator=g) * 2.0 - 1.0
        coefs.append((mags * signs).reshape(w.shape))
    probe = GradientProbe(weights, coefs, torch.randn(6, 8, generator=g),
                          torch.randn(6, 8, generator=g))
    labels = [0, 0, 1, 1, 2, 2]
    data = [dict(inputs=torch.zeros(6, 1),
                 data_samples=[DataSample().set_gt_label(c) for c in labels])]
    gps.select(probe, iter(data))

    def top2(score):
        """Per row, the column indices of the two largest entries, in ascending order."""
        return score.argsort(1, descending=True)[:, :2].sort(1).values

    for i, coef in enumerate(coefs):
        coef = coef.reshape(coef.shape[0], -1)
        expected = top2(coef.abs())
        for wrong in (top2(-coef.abs()), top2(coef), top2(-coef)):
            assert not torch.equal(wrong, expected)
        assert torch.equal(getattr(gps, f'connections_{i}').sort(1).values, expected), i


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


def test_gps_arguments_blocks_and_errors(tmp_path):
    """The paper's default of one connection per neuron; ``connections`` validated at both
    ends (equal to a weight's inputs is allowed); ``blocks`` limits the tuned layers; the errors
    name the argument."""
    from vpetl_mm.peft.gps import GPS
    assert GPS().connections == 1 and GPS().temperature == 0.07
    with pytest.raises(ValueError, match='GPS connections must be >= 1, got 0'):
        GPS(connections=0)
    GPS(connections=1)
    # blocks=[1]: that block's qkv / proj / fc1 / fc2 and the patch embedding, nothing else
    _, model = build(tmp_path, 'vit', dict(type='GPS', blocks=[1]))
    gps = method_of(model)
    layer = model.backbone.layers[1]
    tuned = {id(w) for w in gps._weights}
    assert tuned == {id(layer.attn.qkv.weight), id(layer.attn.proj.weight),
                     id(layer.ffn.layers[0][0].weight), id(layer.ffn.layers[1].weight),
                     id(model.backbone.patch_embed.projection.weight)}
    assert gps.tuned_elements() == 2 * (96 + 32 + 64 + 32 + 32)
    with pytest.raises(ValueError, match=r'^GPS blocks=\['):
        build(tmp_path, 'vit', dict(type='GPS', blocks=[9]))
    with pytest.raises(ValueError, match=r'GPS connections=33 exceeds the 32 inputs of a '
                                         r'weight \(96, 32\)'):
        build(tmp_path, 'vit', dict(type='GPS', connections=33))
    _, model = build(tmp_path, 'vit', dict(type='GPS', connections=32))  # = the smallest fan-in
    gps = method_of(model)
    assert all(getattr(gps, f'connections_{i}').dtype == torch.long and
               (getattr(gps, f'connections_{i}') == -1).all() for i in range(len(gps._weights)))
    with pytest.raises(RuntimeError, match='GPS trains before its selection pass: add '
                                           r"dict\(type='vpetl_mm.PEFTSelectionHook'\) to "
                                           r'custom_hooks \(the vpetl_mm default_runtime has '
                                           r'it\) or load a checkpoint of a run that made the '
                                           'selection'):
        train_step(model, batches(1)[0])
    with pytest.raises(RuntimeError, match='saw no data'):
        gps.select(model, iter([]))


def test_gps_counts_with_two_connections(tmp_path):
    _, model = build(tmp_path, 'vit', dict(type='GPS', connections=2))
    rows = 4 * (96 + 32 + 64 + 32) + 32  # output neurons of the tuned weights
    assert method_of(model).tuned_elements() == 2 * rows + rows  # 2 entries per row + biases


def test_gps_masked_gradient_is_the_gradient_on_selected_entries(tmp_path):
    """After the selection, the gradient reaching a tuned weight is its plain gradient on the
    selected entries (scaled by exactly 1) and zero elsewhere."""
    _, model = build(tmp_path, 'vit', dict(type='GPS', connections=2))
    gps = method_of(model)
    gps.select(model, iter(batches()))
    weight = gps._weights[0]
    idx = gps.connections_0
    data = model.data_preprocessor(batches(1, seed=5)[0], True)
    model.train()
    loss = sum(v for k, v in model.loss(**data).items() if 'loss' in k)
    gps._selecting = True  # the unmasked gradient
    (plain_grad, ) = torch.autograd.grad(loss, weight, retain_graph=True)
    gps._selecting = False
    (masked, ) = torch.autograd.grad(loss, weight)
    rows = plain_grad.reshape(plain_grad.shape[0], -1)
    expected = torch.zeros_like(rows).scatter_(1, idx, rows.gather(1, idx))
    assert torch.equal(masked.reshape_as(rows), expected)


def test_gps_pooled_features_of_each_toolbox():
    """The features GPS's contrastive loss reads: the last output, and for mmaction's
    ``(features, losses)`` pair the features; maps and clips are averaged over their grid."""
    from vpetl_mm.peft.gps import pooled_features

    class Model(torch.nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out = out

        def extract_feat(self, inputs):
            return self.out

    vec = torch.randn(2, 5)
    grid = torch.randn(2, 5, 3, 4)
    clip = torch.randn(2, 5, 2, 3, 4)
    assert torch.equal(pooled_features(Model((torch.randn(2, 5), vec)), None), vec)
    assert torch.equal(pooled_features(Model([grid]), None), grid.mean((2, 3)))
    torch.testing.assert_close(pooled_features(Model((clip, dict(aux=1))), None),
                               clip.mean((2, 3, 4)))
    torch.testing.assert_close(pooled_features(Model(((vec, clip), dict())), None),
                               clip.mean((2, 3, 4)))
    with pytest.raises(TypeError, match='GPS selection needs a classifier with extract_feat; '
                                        'Module has none'):
        pooled_features(torch.nn.Module(), None)

"""PEFTBackbone with the first methods on mmpretrain ViT and Swin inside an ImageClassifier."""
import copy
import re

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from vpetl_mm.engine import trainable_state_dict  # noqa: E402
from vpetl_mm.models import get_peft_state  # noqa: E402

TINY_VIT = dict(type='VisionTransformer',
                arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
                img_size=32, patch_size=8, qkv_bias=True, drop_path_rate=0.1,
                norm_cfg=dict(type='LN', eps=1e-6), init_cfg=None)
TINY_SWIN = dict(type='SwinTransformer', arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2]),
                 img_size=32, patch_size=4, window_size=4, drop_path_rate=0.1, out_indices=(1, ),
                 init_cfg=None)
METHODS = {
    'LinearProbe': dict(type='LinearProbe'),
    'FullFineTune': dict(type='FullFineTune'),
    'LoRA': dict(type='LoRA', rank=4, alpha=8, targets=('q', 'v', 'fc1')),
    'Adapter': dict(type='Adapter', bottleneck=4),
    'DTL': dict(type='DTL', rank=2, add_blocks=(2, 3)),
    'DTL+': dict(type='DTL+', rank=2, add_blocks=(2, 3), kernel_size=3),
    'BitFit': dict(type='BitFit'),
    'LNTune': dict(type='LNTune'),
    'PartialK': dict(type='PartialK', k=1),
    'AdaptFormer': dict(type='AdaptFormer', bottleneck=4),
    'SSF': dict(type='SSF'),
    'RepAdapter': dict(type='RepAdapter', bottleneck=4, groups=2),
    'Hydra': dict(type='Hydra', rank=2, dropout=0.1),
    'ARC': dict(type='ARC', rank=4),
    'Houlsby': dict(type='Houlsby', bottleneck=4),
    'Compacter': dict(type='Compacter', bottleneck=4, phm_dim=2),
    'KAdaptation': dict(type='KAdaptation', phm_dim=4),
    'Mona': dict(type='Mona', bottleneck=8),
    'LoRand': dict(type='LoRand', branches=2, kernel=2),
    'PATT': dict(type='PATT', bottleneck=4),
    'SNF': dict(type='SNF', flow_length=2),
    'IA3': dict(type='IA3'),
}
# methods that leave the output unchanged at initialisation (SSF starts at N(1, .02) scales)
# (ARC: MLP rescale xavier; Houlsby: near-identity truncated-normal init of both projections;
# Mona and LoRand: random up projections, as their authors initialise them)
# SNF: planar flow steps start near, not at, the identity (uniform +-0.01, as the authors)
ZERO_INIT = tuple(m for m in METHODS
                  if m not in ('SSF', 'ARC', 'Houlsby', 'Mona', 'LoRand', 'SNF'))
# which backbone parameters each method may train
OWNS = {
    'LoRA': lambda n: '.lora_' in n,
    'Adapter': lambda n: '.adapter.' in n,
    'DTL': lambda n: '.peft.' in n,
    'DTL+': lambda n: '.peft.' in n,
    'BitFit': lambda n: 'bias' in n.rsplit('.', 1)[-1],
    'LNTune': lambda n: any(k in n for k in ('.ln', '.norm')),
    'PartialK': lambda n: n.startswith(('backbone.layers.3.', 'backbone.stages.1.blocks.1.')),
    'AdaptFormer': lambda n: '.adaptformer.' in n,
    'SSF': lambda n: '.ssf.' in n,
    'RepAdapter': lambda n: '.repadapter_' in n,
    'Hydra': lambda n: '.hydra.' in n,
    'ARC': lambda n: '.arc_' in n or 'peft.methods.arc' in n,
    'Houlsby': lambda n: '.adapter_attn.' in n or '.adapter_mlp.' in n,
    'Compacter': lambda n: '.compacter.' in n or 'peft.methods.compacter.' in n,
    'KAdaptation': lambda n: '.kadaptation.' in n or 'peft.methods.kadaptation.' in n,
    'Mona': lambda n: '.mona_attn.' in n or '.mona_mlp.' in n,
    'LoRand': lambda n: '.lorand_attn.' in n or '.lorand_mlp.' in n,
    'PATT': lambda n: '.patt.' in n,
    'SNF': lambda n: '.snf_attn.' in n or '.snf_mlp.' in n,
    'IA3': lambda n: 'peft.methods.ia3.' in n,
}


def out_dims(backbone):
    return 32 if backbone['type'] == 'VisionTransformer' else 32  # Swin 16 -> 32 after merge


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def pretrained_file(tmp_path, backbone_cfg, seed=0):
    """A checkpoint of a randomly initialised backbone, as the 'pretrained' weights."""
    torch.manual_seed(seed)
    plain = MODELS.build(copy.deepcopy(backbone_cfg))
    plain.init_weights()
    # make the norms non-trivial so that loading is visible in outputs
    for name, p in plain.named_parameters():
        if 'ln' in name or 'norm' in name:
            p.data.add_(0.1 * torch.randn_like(p))
    path = tmp_path / 'pretrained.pth'
    torch.save({'state_dict': plain.state_dict()}, path)
    return plain, str(path)


def classifier_cfg(backbone_cfg, method, pretrained, num_classes=5):
    gap = dict(type='GlobalAveragePooling') if backbone_cfg['type'] == 'SwinTransformer' else None
    return dict(
        type='ImageClassifier',
        backbone=dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(backbone_cfg),
                      pretrained=pretrained, method=copy.deepcopy(method)),
        neck=gap,
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=out_dims(backbone_cfg)),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=num_classes))


def batch(n=4, num_classes=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8)
              for _ in range(n)]
    samples = [DataSample().set_gt_label(int(i) % num_classes) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('backbone_cfg', [TINY_VIT, TINY_SWIN], ids=['vit', 'swin'])
@pytest.mark.parametrize('method', list(METHODS))
def test_attach_identity_train_step(tmp_path, backbone_cfg, method):
    plain, path = pretrained_file(tmp_path, backbone_cfg)
    model = MODELS.build(classifier_cfg(backbone_cfg, METHODS[method], path))
    model.init_weights()  # as Runner.train does: must not touch the backbone
    x = torch.randn(2, 3, 32, 32)

    # output unchanged at initialisation
    if method in ZERO_INIT:
        model.eval()
        plain.eval()
        with torch.no_grad():
            ref = plain(x)[-1]
            out = model.backbone(x)[-1]
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)

    # trainable parameters: the method's and the head's
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith('head.') for n in trainable)
    backbone_trainable = {n for n in trainable if n.startswith('backbone.')}
    if method == 'LinearProbe':
        assert not backbone_trainable
    elif method == 'FullFineTune':
        assert backbone_trainable == {n for n, _ in model.backbone.named_parameters(
            prefix='backbone')}
    else:
        assert backbone_trainable
        assert all(OWNS[method](n) for n in backbone_trainable), backbone_trainable

    # one train_step: finite loss, grads only where trainable, frozen weights bit-identical
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    grads = {}
    for n, p in model.named_parameters():
        if p.requires_grad:  # frozen tensors cannot receive gradients at all
            p.register_hook(lambda g, n=n: grads.__setitem__(n, g))
    log_vars = model.train_step(batch(), optim)
    assert torch.isfinite(log_vars['loss'])
    assert set(grads) == trainable
    for n, p in model.named_parameters():
        if n in trainable:
            continue
        assert torch.equal(p, before[n]), f'frozen {n} changed'
    changed = [n for n in backbone_trainable if not torch.equal(
        dict(model.named_parameters())[n], before[n])]
    if backbone_trainable:
        assert changed, 'no method weight moved after a step'


@pytest.mark.parametrize('backbone_cfg', [TINY_VIT, TINY_SWIN], ids=['vit', 'swin'])
def test_lora_merge_equals_unmerged(tmp_path, backbone_cfg):
    plain, path = pretrained_file(tmp_path, backbone_cfg)
    model = MODELS.build(classifier_cfg(backbone_cfg,
                                        dict(type='LoRA', rank=4, alpha=8,
                                             targets=('q', 'k', 'v', 'proj', 'fc1', 'fc2')),
                                        path))
    torch.manual_seed(3)
    for n, p in model.backbone.named_parameters():
        if 'lora_' in n:
            p.data.normal_(0, 0.1)  # a trained, non-zero update
    model.eval()
    plain.eval()  # mmpretrain backbones' train() returns None: no chaining
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        unmerged = model.backbone(x)[-1]
        assert (unmerged - plain(x)[-1]).abs().max() > 1e-3
        get_peft_state(model)[0].merge()
        merged = model.backbone(x)[-1]
    assert (merged - unmerged).abs().max() < 1e-5
    # the merged backbone is a plain one: same keys as the unmodified backbone
    keys = set(model.backbone.state_dict())
    assert keys == set(plain.state_dict())


def test_state_dict_keys_unchanged_and_trainable_round_trip(tmp_path):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = classifier_cfg(TINY_VIT, METHODS['LoRA'], path)
    model = MODELS.build(cfg)
    plain_keys = set(plain.state_dict())
    keys = set(model.backbone.state_dict())
    assert plain_keys <= keys
    assert all('.lora_' in k for k in keys - plain_keys)
    # train a little, save the trainable part, rebuild, load it: identical outputs
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    for _ in range(2):
        model.train_step(batch(), optim)
    sd = trainable_state_dict(model)
    assert sd and all('.lora_' in k or k.startswith('head.') for k in sd)
    fresh = MODELS.build(cfg)
    missing = fresh.load_state_dict(sd, strict=False).missing_keys
    assert all(not ('.lora_' in k or k.startswith('head.')) for k in missing)
    model.eval()
    fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.backbone(x)[-1], fresh.backbone(x)[-1])


def test_missing_pretrained_weights_raise(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    sd = torch.load(path, weights_only=True)['state_dict']
    sd.pop('layers.0.attn.qkv.weight')
    bad = tmp_path / 'bad.pth'
    torch.save(sd, bad)
    with pytest.raises(KeyError, match='layers.0.attn.qkv.weight'):
        MODELS.build(classifier_cfg(TINY_VIT, METHODS['LoRA'], str(bad)))


def test_bad_method_config_errors(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    with pytest.raises(ValueError, match='unknown roles'):
        MODELS.build(classifier_cfg(TINY_VIT, dict(type='LoRA', targets=('qq', )), path))
    with pytest.raises(ValueError, match='out of range'):
        MODELS.build(classifier_cfg(TINY_VIT, dict(type='DTL', add_blocks=(9, )), path))


def test_dtl_head_moves_final_norm_to_pooled_norm(tmp_path):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    cfg = dict(TINY_VIT, out_type='avg_featmap', final_norm=False)
    model = MODELS.build(classifier_cfg(cfg, METHODS['DTL'], path))
    torch.testing.assert_close(model.backbone.ln2.weight, plain.ln1.weight)
    model.eval()
    plain.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), plain.patch_embed(x)[0]], 1)
        tokens = tokens + plain.pos_embed
        for layer in plain.layers:
            tokens = layer(tokens)
        ref = torch.nn.functional.layer_norm(tokens[:, 1:].mean(1), (32, ), plain.ln1.weight,
                                             plain.ln1.bias, eps=1e-6)
        torch.testing.assert_close(model.backbone(x)[-1], ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize('method', ['FacT-TT', 'FacT-TK'])
def test_fact_on_mmpretrain_vit(tmp_path, method):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    model = MODELS.build(classifier_cfg(TINY_VIT, dict(type=method, rank=4, scale=2.0), path))
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith('peft.methods.fact') for n in trainable), trainable
    torch.manual_seed(4)
    for n, p in model.backbone.named_parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.2)
    model.eval()
    plain.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        unmerged = model.backbone(x)[-1]
        get_peft_state(model)[0].merge()
        merged = model.backbone(x)[-1]
    assert (merged - unmerged).abs().max() < 1e-4
    assert set(model.backbone.state_dict()) == set(plain.state_dict())


# every method with a tiny setting (FacT shares its factors across blocks of one width: ViT
# only; on Swin the tests below check its refusal)
ALL_METHODS = dict(METHODS, **{'FacT-TT': dict(type='FacT-TT', rank=4, scale=2.0),
                               'FacT-TK': dict(type='FacT-TK', rank=4, scale=2.0)})


def perturb_trainable(model, std=0.05, seed=3):
    """Give every trainable backbone tensor a 'trained' value (method parameters start at zero
    in many methods, which would hide mistakes)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.backbone.named_parameters():
            if p.requires_grad:
                p.add_(std * torch.randn_like(p))


def assert_fact_refused_on_swin(tmp_path, method):
    """FacT shares its factors across blocks, so it refuses Swin (stage widths 16 and 32)."""
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    message = re.escape(' shares its factors across blocks, which needs one width; this '
                        'backbone has widths [16, 32] (Swin stages)')
    # the message names the class (FacTTT / FacTTK) rather than the registered FacT-TT / FacT-TK
    with pytest.raises(ValueError, match=method.replace('-', '-?') + message):
        MODELS.build(classifier_cfg(TINY_SWIN, ALL_METHODS[method], path))


@pytest.mark.parametrize('backbone_cfg', [TINY_VIT, TINY_SWIN], ids=['vit', 'swin'])
@pytest.mark.parametrize('method', [m for m in ALL_METHODS if m != 'LinearProbe'])
def test_trainable_round_trip_every_method(tmp_path, backbone_cfg, method):
    """Trainable-only state dict -> a freshly built model: bit-identical outputs (FacT on
    Swin: the refusal to build)."""
    if method in ('FacT-TT', 'FacT-TK') and backbone_cfg is TINY_SWIN:
        assert_fact_refused_on_swin(tmp_path, method)
        return
    _, path = pretrained_file(tmp_path, backbone_cfg)
    cfg = classifier_cfg(backbone_cfg, ALL_METHODS[method], path)
    model = MODELS.build(cfg)
    perturb_trainable(model)
    sd = trainable_state_dict(model)
    torch.manual_seed(123)  # the fresh model's own random init differs
    fresh = MODELS.build(cfg)
    fresh.load_state_dict(sd, strict=False)
    model.eval()
    fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x, mode='tensor'), fresh(x, mode='tensor'))


@pytest.mark.parametrize('backbone_cfg', [TINY_VIT, TINY_SWIN], ids=['vit', 'swin'])
@pytest.mark.parametrize('method', [m for m in ALL_METHODS if m != 'LinearProbe'])
def test_merge_every_mergeable_method(tmp_path, backbone_cfg, method):
    """Mergeable methods: merged == unmerged in eval (fp32, max abs diff < 1e-5) and the merged
    backbone has the plain keys; the others refuse with a TypeError and stay as they were (FacT
    on Swin: the refusal to build)."""
    if method in ('FacT-TT', 'FacT-TK') and backbone_cfg is TINY_SWIN:
        assert_fact_refused_on_swin(tmp_path, method)
        return
    plain, path = pretrained_file(tmp_path, backbone_cfg)
    model = MODELS.build(classifier_cfg(backbone_cfg, ALL_METHODS[method], path))
    perturb_trainable(model)
    state = model.backbone.peft
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        unmerged = model.backbone(x)[-1]
        if not state.mergeable:
            with pytest.raises(TypeError, match='not mergeable'):
                state.merge()
            assert torch.equal(model.backbone(x)[-1], unmerged)
            return
        state.merge()
        merged = model.backbone(x)[-1]
    assert (merged - unmerged).abs().max() < 1e-5
    assert set(model.backbone.state_dict()) == set(plain.state_dict())

"""Every method can be disabled, enabled and detached through what its spec recorded, and a
backbone can hold several named method sets (``backbone.peft``: :class:`PEFTState`)."""
import copy

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_engine.test_autocast import METHODS as STEP_METHODS  # noqa: E402
from tests.test_engine.test_autocast import VIT_ONLY  # noqa: E402
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             pretrained_file)
from vpetl_mm.engine import trainable_state_dict  # noqa: E402

METHODS = dict(STEP_METHODS, **{
    'DyT': dict(type='DyT', bottleneck=4, dropout=0.0),
    'GPS': dict(type='GPS', connections=2),
    'SCT': dict(type='SCT', top_n=4),
    'SCT-mlp': dict(type='SCT', top_n=4, mode='mlp'),
    'HST': dict(type='HST', dims=(8, 8, 16, 16), num_heads=(2, 2, 2, 2)),
    'Res-Tuning-adapter': dict(type='Res-Tuning', mha='adapter', ffn='adapter', bottleneck=4),
})
CASES = ([(m, 'vit') for m in METHODS if m != 'LinearProbe']
         + [(m, 'swin') for m in METHODS
            if m not in VIT_ONLY + ('LinearProbe', 'HST', 'DyT')])


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def build(path, family, method):
    return MODELS.build(dict(type='vpetl_mm.PEFTBackbone', pretrained=path,
                             backbone=copy.deepcopy(TINY_VIT if family == 'vit' else TINY_SWIN),
                             method=copy.deepcopy(method)))


def perturb(backbone, std=0.05, seed=3):
    """Give every trainable tensor (and SCT's channel choice) a 'trained' value."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in backbone.parameters():
            if p.requires_grad:
                p.add_(std * torch.randn_like(p))
        for name, buffer in backbone.named_buffers():
            if name.endswith('sct.index'):  # as SCT's selection pass would pick
                buffer.copy_(torch.randperm(16)[:len(buffer)].sort().values)


def hooks(module):
    """Forward hooks, pre-hooks and instance-level forwards on every submodule."""
    return [(len(m._forward_hooks), len(m._forward_pre_hooks), 'forward' in vars(m))
            for m in module.modules()]


def run(backbone, x):
    with torch.no_grad():
        return [o.clone() for o in backbone(x)]


def assert_equal(outs, refs):
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        assert torch.equal(out, ref)


@pytest.mark.parametrize('method, family', CASES)
def test_disable_enable_detach(tmp_path, method, family):
    """disable -> the plain backbone's outputs bit for bit, with the state-dict keys kept;
    enable -> the method's outputs again; detach -> outputs, state dict, hooks and forwards of
    the plain backbone, nothing trainable."""
    plain, path = pretrained_file(tmp_path, TINY_VIT if family == 'vit' else TINY_SWIN)
    plain.eval()
    backbone = build(path, family, METHODS[method])
    perturb(backbone)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    ref = run(plain, x)
    on = run(backbone, x)
    assert any(o.shape != r.shape or not torch.allclose(o, r) for o, r in zip(on, ref))
    keys = list(backbone.state_dict())
    state = backbone.peft

    state.disable()
    assert_equal(run(backbone, x), ref)
    assert list(backbone.state_dict()) == keys
    state.enable()
    assert_equal(run(backbone, x), on)
    with state.disabled():
        assert_equal(run(backbone, x), ref)
    assert_equal(run(backbone, x), on)

    state.detach()
    assert not hasattr(backbone, 'peft')
    assert_equal(run(backbone, x), ref)
    assert hooks(backbone) == hooks(plain)
    mine, theirs = backbone.state_dict(), plain.state_dict()
    assert list(mine) == list(theirs)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not any(p.requires_grad for p in backbone.parameters())


def test_disable_is_undone_in_training_too(tmp_path):
    """A training step after disable / enable trains the method (its hooks are back)."""
    _, path = pretrained_file(tmp_path, TINY_VIT)
    backbone = build(path, 'vit', dict(type='LoRA', rank=2))
    with backbone.peft.disabled():
        pass
    backbone(torch.randn(2, 3, 32, 32))[-1].sum().backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def test_disable_one_of_composed_methods(tmp_path):
    """Disabling one method of a composition leaves the other acting: the same outputs as
    detaching it; enabling it restores the composed outputs (hooks back in their order)."""
    _, path = pretrained_file(tmp_path, TINY_VIT)
    backbone = build(path, 'vit', [dict(type='VPT-deep', length=2), dict(type='LoRA', rank=2),
                                   dict(type='BitFit')])
    perturb(backbone)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    both = run(backbone, x)
    backbone.peft.disable('lora')
    without = run(backbone, x)
    assert not torch.allclose(without[-1], both[-1])
    backbone.peft.enable('lora')
    assert_equal(run(backbone, x), both)
    backbone.peft.detach('lora')
    assert list(backbone.peft.methods) == ['vpt-deep', 'bitfit']
    assert [c['type'] for c in backbone.peft.method_cfgs] == ['VPT-deep', 'BitFit']
    assert_equal(run(backbone, x), without)
    assert not any('lora' in k for k in backbone.state_dict())
    with pytest.raises(KeyError, match=r"no PEFT method \['lora'\]"):
        backbone.peft.disable('lora')


def test_method_sets_switch(tmp_path):
    """Two sets of the same types on one backbone: each keeps its own modules (same names) and
    in-place trained tensors; the state dict holds the active set's, with the keys a single-set
    model has; switching back and forth gives each set's outputs."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    cfg = [dict(type='LoRA', rank=2), dict(type='BitFit')]
    backbone = build(path, 'vit', cfg)
    perturb(backbone, seed=1)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    out_a = run(backbone, x)
    keys_a = list(trainable_state_dict(backbone))
    state = backbone.peft
    state.add_set('task_b', cfg)
    assert state.set_names == ['default', 'task_b']
    assert_equal(run(backbone, x), out_a)  # adding a set leaves the active one alone

    state.use('task_b')
    assert state.active == 'task_b'
    assert_equal(run(backbone, x), run(plain, x))  # untrained set b: LoRA zero, biases plain
    perturb(backbone, seed=2)
    out_b = run(backbone, x)
    assert not torch.allclose(out_b[-1], out_a[-1])
    assert list(trainable_state_dict(backbone)) == keys_a
    sd_b = trainable_state_dict(backbone)

    state.use('default')
    assert_equal(run(backbone, x), out_a)
    state.use('task_b')
    assert_equal(run(backbone, x), out_b)
    # set b's trainable checkpoint loads into a fresh single-set model: the same outputs
    fresh = build(path, 'vit', cfg)
    fresh.eval()
    fresh.load_state_dict(sd_b, strict=False)
    assert_equal(run(fresh, x), out_b)

    with pytest.raises(ValueError, match="set named 'task_b' exists"):
        state.add_set('task_b', cfg)
    with pytest.raises(KeyError, match="no PEFT method set 'c'"):
        state.use('c')
    state.detach()
    assert_equal(run(backbone, x), run(plain, x))


def test_merge_goes_through_the_record(tmp_path):
    """After a merge no hook or module of the method is left; a merged state refuses to
    disable or detach."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    backbone = build(path, 'vit', dict(type='RepAdapter', bottleneck=4))
    perturb(backbone)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    before = run(backbone, x)
    backbone.peft.merge()
    assert (run(backbone, x)[-1] - before[-1]).abs().max() < 1e-5
    assert not any('repadapter' in name for name, _ in backbone.named_modules())
    norm_hooks = [len(layer.ln1._forward_hooks) + len(layer.ln2._forward_hooks)
                  for layer in backbone.layers]
    assert norm_hooks == [0] * len(backbone.layers)
    with pytest.raises(RuntimeError, match='merged'):
        backbone.peft.disable()


def test_module_name_collision_is_refused(tmp_path):
    """Two methods writing the same module name fail at build time, naming it."""
    _, path = pretrained_file(tmp_path, TINY_VIT)
    with pytest.raises(ValueError, match=r'as Linear\.lora_q: the name is taken'):
        MODELS.build(dict(type='vpetl_mm.PEFTBackbone', pretrained=path,
                          backbone=copy.deepcopy(TINY_VIT),
                          method=[dict(type='LoRA', rank=2), dict(type='LoRA', rank=2)]))


TOOLBOX_METHODS = [dict(type='LoRA', rank=2, targets=('q', 'v', 'proj', 'fc1')),
                   dict(type='PrefixTuning', length=2, bottleneck=4),
                   dict(type='Adapter', bottleneck=4), dict(type='BitFit')]


@pytest.mark.parametrize('family', ['mmaction-vit', 'mmaction-swin3d', 'mmseg-vit',
                                    'mmseg-swin', 'mmdet-swin'])
def test_detach_in_toolbox_backbones(family, tmp_path):
    """Detaching a composition that uses the spec-installed attention forwards (prefixes, the
    qkv site of mmaction / mmseg ViT) gives the plain backbone back: outputs bit for bit,
    state dict, no hook or instance forward left; E3VA likewise on the dense Swins."""
    from tests.test_models.test_specs_toolboxes import setup
    plain, build_model, batch_fn = setup(family, tmp_path)
    plain.requires_grad_(False)  # torch's MultiheadAttention takes another path when it trains
    _, x = batch_fn()
    methods = [TOOLBOX_METHODS]
    if family in ('mmseg-swin', 'mmdet-swin'):
        methods.append(dict(type='E3VA', branches=2, kernel=2))
    for method in methods:
        backbone = build_model(method).backbone
        perturb(backbone)
        backbone.eval()
        ref, on = run_any(plain, x), run_any(backbone, x)
        assert not torch.allclose(on, ref)
        with backbone.peft.disabled():
            if family in ('mmaction-vit', 'mmseg-vit'):  # the spec's SDPA forward stays
                torch.testing.assert_close(run_any(backbone, x), ref, rtol=0, atol=1e-6)
            else:
                assert torch.equal(run_any(backbone, x), ref)
        assert torch.equal(run_any(backbone, x), on)
        backbone.peft.detach()
        assert torch.equal(run_any(backbone, x), ref)
        assert hooks(backbone) == hooks(plain)
        assert not any(k.startswith('_vpetl') for m in backbone.modules() for k in vars(m))
        mine, theirs = backbone.state_dict(), plain.state_dict()
        assert list(mine) == list(theirs)
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def run_any(backbone, x):
    """Every output of ``backbone`` flattened into one vector."""
    with torch.no_grad():
        out = backbone(x)
    out = out if isinstance(out, (tuple, list)) else [out]
    return torch.cat([o.flatten() for o in out])


@pytest.mark.parametrize('method', [dict(type='LoRA', rank=2, targets=('q', 'v', 'fc2')),
                                    dict(type='FacT-TT', rank=2, scale=2.0),
                                    dict(type='KAdaptation', phm_dim=4),
                                    [dict(type='LoRA', rank=2), dict(type='FacT-TK', rank=2)]],
                         ids=['lora', 'fact-tt', 'kadaptation', 'lora+fact-tk'])
def test_unmerge_restores_the_method(tmp_path, method):
    """merge then unmerge: the frozen weights are back (up to rounding), the methods act again
    with their weights and train; methods whose fold is not an addition refuse."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    backbone = build(path, 'vit', method)
    perturb(backbone)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    on = run(backbone, x)
    keys = list(backbone.state_dict())
    backbone.peft.merge()
    assert set(backbone.state_dict()) == set(plain.state_dict())
    backbone.peft.unmerge()
    assert list(backbone.state_dict()) == keys
    torch.testing.assert_close(run(backbone, x)[-1], on[-1], rtol=0, atol=1e-5)
    frozen = {k: v for k, v in backbone.state_dict().items() if k in plain.state_dict()}
    for k, v in frozen.items():
        torch.testing.assert_close(v, plain.state_dict()[k], rtol=0, atol=1e-6)
    with backbone.peft.disabled():
        torch.testing.assert_close(run(backbone, x)[-1], run(plain, x)[-1], rtol=0,
                                   atol=1e-5)
    backbone.train()
    backbone(x)[-1].sum().backward()
    assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)


def test_unmerge_refused_for_other_folds(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    backbone = build(path, 'vit', [dict(type='LoRA', rank=2), dict(type='SSF')])
    with pytest.raises(RuntimeError, match='nothing to unmerge'):
        backbone.peft.unmerge()
    backbone.peft.merge()
    with pytest.raises(TypeError, match='cannot unmerge'):
        backbone.peft.unmerge()

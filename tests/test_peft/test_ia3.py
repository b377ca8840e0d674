"""IA3: ``k -> l_k k``, ``v -> l_v v``, ``fc2(h) -> fc2(l_ff h)`` against torch hooks on the plain
ViT, the merge, the ViT-B/16 count, the targets and the errors."""
import copy
import re

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import TINY_VIT, pretrained_file  # noqa: E402
from vpetl_mm.engine.trainable import trainable_elements  # noqa: E402

DIMS, HIDDEN = 32, 64


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def build(path, **kwargs):
    return MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                             pretrained=path, method=dict(type='IA3', **kwargs)))


def randomise(method, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in method.parameters():
            p.copy_(1 + 0.5 * torch.randn_like(p))


def reference(plain, scales, x):
    """The plain ViT with the scalings as torch hooks on its qkv output and fc2 input."""
    handles = []
    for i, layer in enumerate(plain.layers):
        s = scales.get(str(i))
        if s is None:
            continue
        ones = torch.ones(DIMS)
        qkv_scale = torch.cat([ones, s['k'] if 'k' in s else ones, s['v'] if 'v' in s else ones])
        handles.append(layer.attn.qkv.register_forward_hook(
            lambda m, a, y, c=qkv_scale: y * c))
        if 'ff' in s:
            handles.append(layer.ffn.layers[1].register_forward_pre_hook(
                lambda m, a, f=s['ff']: (a[0] * f, )))
    try:
        with torch.no_grad():
            return plain(x)[-1]
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize('kwargs', [{}, dict(targets=('v', 'ff')), dict(targets=('k', )),
                                    dict(blocks=[1, 3])])
def test_formula_and_merge(tmp_path, kwargs):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    backbone = build(path, **kwargs)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    method = backbone.peft.methods['ia3']
    with torch.no_grad():  # ones: the plain backbone
        assert torch.equal(backbone(x)[-1], plain(x)[-1])
    randomise(method)
    scales = {k: {t: v.detach() for t, v in d.items()} for k, d in method.scales.items()}
    targets = kwargs.get('targets', ('k', 'v', 'ff'))
    blocks = kwargs.get('blocks', [0, 1, 2, 3])
    assert sorted(scales) == [str(b) for b in blocks]
    assert all(sorted(d) == sorted(targets) for d in scales.values())
    ref = reference(plain, scales, x)
    with torch.no_grad():
        out = backbone(x)[-1]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    assert not torch.allclose(out, plain(x)[-1], atol=1e-3)
    backbone.peft.merge()
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[-1], ref, rtol=0, atol=1e-5)
    assert set(backbone.state_dict()) == set(plain.state_dict())


def test_parameters_and_vit_b_count(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    backbone = build(path)
    trainable = {n: p.shape for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {f'peft.methods.ia3.scales.{i}.{t}': (HIDDEN if t == 'ff' else DIMS, )
                         for i in range(4) for t in ('k', 'v', 'ff')}
    with torch.device('meta'):
        vit_b = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(type='IA3'),
                                  backbone=dict(type='VisionTransformer', arch='b',
                                                img_size=224, patch_size=16, init_cfg=None)))
    assert trainable_elements(vit_b) == 12 * (768 + 768 + 3072) == 55296


@pytest.mark.parametrize('targets', [(), ('q', ), ('k', 'k'), ('fc1', )])
def test_bad_targets(targets):
    with pytest.raises(ValueError, match=r'IA3 targets=.*choose distinct ones among'):
        vpetl_mm.peft.ia3.IA3(targets=targets)


def test_blocks_out_of_range_names_the_key(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    with pytest.raises(ValueError, match=r'^IA3 blocks=\[9\]: block 9 is out of range'):
        build(path, blocks=[9])


def test_merge_without_a_qkv_bias(tmp_path):
    """A qkv linear with no bias (``qkv_bias=False``): only the weight rows are scaled."""
    cfg = dict(TINY_VIT, qkv_bias=False)
    plain, path = pretrained_file(tmp_path, cfg)
    plain.eval()
    backbone = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(cfg),
                                 pretrained=path, method=dict(type='IA3')))
    backbone.eval()
    randomise(backbone.peft.methods['ia3'])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = backbone(x)[-1]
        backbone.peft.merge()
        torch.testing.assert_close(backbone(x)[-1], before, rtol=0, atol=1e-5)
    assert backbone.layers[0].attn.qkv.bias is None


def test_qkv_keeps_its_dtype_under_autocast(tmp_path):
    """Under bf16 autocast the scaled qkv output stays bf16 (the scale is cast to it)."""
    _, path = pretrained_file(tmp_path, TINY_VIT)
    backbone = build(path)
    seen = []
    backbone.layers[0].attn.qkv.register_forward_hook(lambda m, a, y: seen.append(y.dtype))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        backbone(torch.randn(2, 3, 32, 32))
    assert seen == [torch.bfloat16]


def test_fold_refused_where_the_qkv_bias_is_assembled_outside(tmp_path):
    """mmaction's ViT adds ``[q_bias, 0, v_bias]`` outside the linear: scaling k / v cannot be
    folded there (refused, model unchanged); the MLP scale alone folds."""
    from tests.test_models.test_specs_toolboxes import setup
    plain, build_model, batch_fn = setup('mmaction-vit', tmp_path)
    _, x = batch_fn()
    for targets in (('k', ), ('v', ), ('k', 'v', 'ff')):
        backbone = build_model(dict(type='IA3', targets=targets)).backbone
        randomise(backbone.peft.methods['ia3'])
        backbone.eval()
        with torch.no_grad():
            before = backbone(x)
            message = ('cannot fold IA3 into this qkv: its bias is assembled outside the linear '
                       '(mmaction ViT q_bias / v_bias)')
            with pytest.raises(ValueError, match=f'^{re.escape(message)}$'):
                backbone.peft.merge()
            assert torch.equal(backbone(x), before)
    backbone = build_model(dict(type='IA3', targets=('ff', ))).backbone
    randomise(backbone.peft.methods['ia3'])
    backbone.eval()
    with torch.no_grad():
        before = backbone(x)
        backbone.peft.merge()
        torch.testing.assert_close(backbone(x), before, rtol=0, atol=1e-5)

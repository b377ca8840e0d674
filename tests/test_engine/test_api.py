"""The Python API (get_peft_model, save / load_trainable, merge_and_unload, save_merged) on
models built and loaded through each toolbox's own API, from local checkpoints the test writes;
and PEFTBackbone on a module the caller loaded."""
import copy
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope

import vpetl_mm
from tests.test_models import test_specs_toolboxes as toolboxes

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_VIT = dict(type='VisionTransformer',
                arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                img_size=32, patch_size=8, qkv_bias=True, norm_cfg=dict(type='LN', eps=1e-6),
                out_type='cls_token', init_cfg=None)
LORA = dict(type='LoRA', rank=2, alpha=8, targets=('q', 'v'))
ADAPTFORMER = dict(type='AdaptFormer', bottleneck=4, scale=0.1)


def classifier_cfg():
    return dict(type='ImageClassifier', backbone=copy.deepcopy(TINY_VIT),
                head=dict(type='LinearClsHead', num_classes=3, in_channels=32),
                data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=3))


def cls_batch():
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8)
              for _ in range(2)]
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    return dict(inputs=inputs, data_samples=samples), torch.randn(2, 3, 32, 32)


def _api(scope):
    """The toolbox's own "build a model from a config and a checkpoint" call."""
    if scope == 'mmpretrain':
        import mmpretrain
        return lambda cfg, ckpt: mmpretrain.get_model(cfg, pretrained=ckpt, device='cpu')
    if scope == 'mmaction':
        from mmaction.apis import init_recognizer
        return lambda cfg, ckpt: init_recognizer(cfg, ckpt, device='cpu')
    if scope == 'mmseg':
        from mmseg.apis import init_model
        return lambda cfg, ckpt: init_model(cfg, ckpt, device='cpu')
    from mmdet.apis import init_detector
    return lambda cfg, ckpt: init_detector(cfg, ckpt, palette='random', device='cpu')


def toolbox(name):
    """``(scope, model config, batch function)`` of one toolbox's tiny model."""
    if name == 'mmpretrain':
        return 'mmpretrain', Config(dict(model=classifier_cfg())).model, cls_batch
    family = {'mmaction': 'mmaction-vit', 'mmseg': 'mmseg-vit', 'mmdet': 'mmdet-swin'}[name]
    scope, backbone, model_fn, batch_fn = toolboxes.FAMILIES[family]()
    return scope, Config(dict(model=model_fn(backbone))).model, batch_fn


def write_checkpoint(scope, model_cfg, path):
    """A model of the toolbox with non-trivial random weights, saved as a model-zoo file."""
    from mmengine.registry import MODELS
    init_default_scope(scope)
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(model_cfg))
    for p in model.parameters():
        p.data.normal_(0, 0.05) if p.dim() > 1 else p.data.uniform_(-0.1, 0.1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({'state_dict': state, 'meta': {}}, path)
    return state


def load(scope, model_cfg, ckpt):
    pytest.importorskip({'mmpretrain': 'mmpretrain', 'mmaction': 'mmaction', 'mmseg': 'mmseg',
                         'mmdet': 'mmdet'}[scope])
    return _api(scope)(Config(dict(model=copy.deepcopy(model_cfg), default_scope=scope)),
                       str(ckpt))


def features(model, x):
    model.eval()
    with torch.no_grad():
        return toolboxes.features(model.backbone, x)


@pytest.mark.parametrize('method', [LORA, ADAPTFORMER], ids=['LoRA', 'AdaptFormer'])
@pytest.mark.parametrize('name', ['mmpretrain', 'mmaction', 'mmseg', 'mmdet'])
def test_model_zoo_api_then_wrap(name, method, tmp_path):
    scope, model_cfg, batch_fn = toolbox(name)
    pytest.importorskip(scope)
    saved = write_checkpoint(scope, model_cfg, tmp_path / 'zoo.pth')
    model = load(scope, model_cfg, tmp_path / 'zoo.pth')
    data, x = batch_fn()
    plain = features(model, x)

    vpetl_mm.get_peft_model(model, copy.deepcopy(method))
    # every weight the toolbox loaded is still there, bit for bit
    own = model.state_dict()
    for key, value in saved.items():
        assert torch.equal(own[key], value), key
    # zero-initialised methods: the model computes what it computed before
    torch.testing.assert_close(features(model, x), plain, rtol=0, atol=1e-6)

    # the backbone is frozen; the method's parameters and the rest of the model train
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    in_backbone = {n for n in trainable if n.startswith('backbone.')}
    assert in_backbone and all(n not in saved for n in in_backbone)
    assert all(n in trainable for n in saved if not n.startswith(('backbone.',
                                                                  'data_preprocessor.'))
               and n in dict(model.named_parameters()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train_step(data, OptimWrapper(optimizer))
    after = dict(model.named_parameters())
    for n, p in after.items():
        if n not in trainable:
            assert torch.equal(p, before[n]), f'frozen {n} changed'
    moved = {n for n in trainable if not torch.equal(after[n], before[n])}
    assert moved & in_backbone, 'no method parameter moved'
    assert moved - in_backbone, 'no head parameter moved'

    # trainable-only save -> a fresh model from the same zoo files -> identical model
    vpetl_mm.save_trainable(model, str(tmp_path / 'peft.pth'))
    fresh = vpetl_mm.get_peft_model(load(scope, model_cfg, tmp_path / 'zoo.pth'),
                                    copy.deepcopy(method), verbose=False)
    vpetl_mm.load_trainable(fresh, str(tmp_path / 'peft.pth'))
    fresh_state = fresh.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(fresh_state[key], value), key
    torch.testing.assert_close(features(fresh, x), features(model, x), rtol=0, atol=0)


@pytest.mark.parametrize('name', ['mmpretrain', 'mmseg', 'mmdet'])
def test_save_merged_loads_into_the_plain_toolbox_model(name, tmp_path):
    scope, model_cfg, batch_fn = toolbox(name)
    pytest.importorskip(scope)
    write_checkpoint(scope, model_cfg, tmp_path / 'zoo.pth')
    model = vpetl_mm.get_peft_model(load(scope, model_cfg, tmp_path / 'zoo.pth'),
                                    copy.deepcopy(LORA), verbose=False)
    torch.manual_seed(1)
    for n, p in model.named_parameters():
        if '.lora_' in n:
            p.data.normal_(0, 0.3)
    _, x = batch_fn()
    tuned = features(model, x)
    vpetl_mm.save_merged(model, str(tmp_path / 'merged.pth'))
    plain = load(scope, model_cfg, tmp_path / 'merged.pth')  # the toolbox API, no wrapping
    assert not vpetl_mm.get_peft_state(plain)
    assert set(plain.state_dict()) == set(torch.load(tmp_path / 'merged.pth',
                                                     weights_only=True)['state_dict'])
    torch.testing.assert_close(features(plain, x), tuned, rtol=0, atol=1e-5)


def test_loaded_module_is_not_reinitialised(tmp_path):
    """The issue's case: build a backbone, load weights into it, wrap it."""
    pytest.importorskip('mmpretrain')
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    source = MODELS.build(copy.deepcopy(TINY_VIT))
    for p in source.parameters():
        p.data.uniform_(-1, 1)
    loaded = {k: v.clone() for k, v in source.state_dict().items()}
    module = MODELS.build(copy.deepcopy(TINY_VIT))  # built, never initialised
    module.load_state_dict(loaded)
    wrapped = vpetl_mm.PEFTBackbone(module, method=copy.deepcopy(LORA))
    assert wrapped is module
    own = wrapped.state_dict()
    assert all(torch.equal(own[k], v) for k, v in loaded.items())

    # and get_peft_model on the bare backbone: the same
    other = MODELS.build(copy.deepcopy(TINY_VIT))
    other.load_state_dict(loaded)
    vpetl_mm.get_peft_model(other, dict(type='Adapter', bottleneck=4), verbose=False)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in loaded.items())
    assert {n for n, p in other.named_parameters() if p.requires_grad} == {
        n for n in other.state_dict() if '.adapter.' in n}


def test_config_built_backbone_is_initialised_only_without_pretrained(tmp_path, caplog):
    pytest.importorskip('mmpretrain')
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    random_init = vpetl_mm.PEFTBackbone(copy.deepcopy(TINY_VIT), method=copy.deepcopy(LORA))
    # init_weights ran: the position embedding is trunc-normal, not the zeros it is built with
    assert random_init.pos_embed.abs().sum() > 0
    source = MODELS.build(copy.deepcopy(TINY_VIT))
    torch.save(source.state_dict(), tmp_path / 'w.pth')  # built only: zero pos_embed
    from_file = vpetl_mm.PEFTBackbone(copy.deepcopy(TINY_VIT), method=copy.deepcopy(LORA),
                                      pretrained=str(tmp_path / 'w.pth'))
    assert torch.equal(from_file.pos_embed, source.pos_embed)


def test_errors(tmp_path):
    pytest.importorskip('mmpretrain')
    scope, model_cfg, _ = toolbox('mmpretrain')
    write_checkpoint(scope, model_cfg, tmp_path / 'zoo.pth')
    model = load(scope, model_cfg, tmp_path / 'zoo.pth')
    with pytest.raises(ValueError, match='carries no PEFT method'):
        vpetl_mm.save_trainable(model, str(tmp_path / 'x.pth'))
    with pytest.raises(ValueError, match='needs a method'):
        vpetl_mm.get_peft_model(model, None)
    vpetl_mm.get_peft_model(model, dict(type='Adapter', bottleneck=4), verbose=False)
    with pytest.raises(ValueError, match='already carries a PEFT method'):
        vpetl_mm.get_peft_model(model, copy.deepcopy(LORA))
    with pytest.raises(TypeError, match=r"method\(s\) \['adapter'\] are not mergeable"):
        vpetl_mm.merge_and_unload(model)
    vpetl_mm.save_trainable(model, str(tmp_path / 'adapter.pth'))
    other = vpetl_mm.get_peft_model(load(scope, model_cfg, tmp_path / 'zoo.pth'),
                                    copy.deepcopy(LORA), verbose=False)
    with pytest.raises(ValueError, match='trained with PEFT methods'):
        vpetl_mm.load_trainable(other, str(tmp_path / 'adapter.pth'))


def readme_python_api_example():
    text = open(osp.join(ROOT, 'docs', 'python-api.md')).read()
    section = text.split('# Python API', 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'```python\n(.*?)```', section, re.S)
    assert blocks, 'docs/python-api.md has no python example under "# Python API"'
    return blocks[0]


def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    """The README's example, as written, with the model-zoo file it names in place."""
    pytest.importorskip('mmpretrain')
    import mmpretrain
    code = readme_python_api_example()
    name, ckpt = re.search(r"get_model\('([^']+)', pretrained='([^']+)'", code).groups()
    monkeypatch.chdir(tmp_path)
    zoo = mmpretrain.get_model(name, pretrained=False)
    for p in zoo.parameters():
        p.data.normal_(0, 0.02)
    (tmp_path / osp.dirname(ckpt)).mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': zoo.state_dict()}, ckpt)
    namespace = {}
    exec(compile(code, 'README.md', 'exec'), namespace)
    assert vpetl_mm.get_peft_state(namespace['model'])
    assert osp.isfile('lora.pth') and osp.isfile('merged.pth')


def test_deepcopy_of_a_wrapped_model_is_refused():
    """A deep copy would keep hooks bound to the original's method modules (its outputs would
    ignore its own weights), so it is refused with what to do instead."""
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS

    from tests.test_models.test_peft_backbone_mmpretrain import TINY_VIT
    init_default_scope('mmpretrain')
    model = PRETRAIN_MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=dict(TINY_VIT),
                                       method=dict(type='LoRA', rank=2)))
    with pytest.raises(TypeError, match='copy.deepcopy of a model with PEFT methods is not '
                       'supported.*save_trainable / load_trainable'):
        copy.deepcopy(model)

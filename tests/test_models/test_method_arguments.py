"""The arguments every method shares with its paper: defaults, ``blocks``, and the errors that
name a bad value (what the mutation runs found untested in method after method).

``blocks`` is checked by behaviour: with the method's parameters given trained values, the
blocks outside the selection compute exactly what the plain blocks compute on the same input,
and every selected block differs.
"""
import copy
import re

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import (ALL_METHODS,  # noqa: E402
                                                             TINY_VIT, pretrained_file)
from vpetl_mm.registry import PEFT_METHODS  # noqa: E402

#: type -> the defaults its paper / the authors' code give
DEFAULTS = {
    'KAdaptation': dict(phm_dim=32, rank=1, scale=160.0, dropout=0.5, targets=('q', 'v')),
    'PATT': dict(bottleneck=64, scale=0.2, targets=('k', 'v')),
    'LoRand': dict(branches=2, kernel=8, factor=2),
    'Mona': dict(bottleneck=64, dropout=0.1),
    'SNF': dict(flow_length=16, recompute=True),
    'PrefixTuning': dict(length=10, bottleneck=64),
    'Res-Tuning-Bypass': dict(bottleneck=10, zero_init_last=True),
}
#: type -> a tiny setting that accepts ``blocks`` (the shared tiny settings where they exist)
TINY = dict({name: ALL_METHODS[name] for name in (
    'KAdaptation', 'PATT', 'LoRand', 'Mona', 'SNF', 'LoRA', 'Adapter', 'AdaptFormer')},
    PrefixTuning=dict(type='PrefixTuning', length=2, bottleneck=4),
    DyT=dict(type='DyT', bottleneck=4, dropout=0.0))
#: type -> (arguments, the error message they get)
ERRORS = {
    'KAdaptation': [(dict(targets=('q', 'fc1')), "KAdaptation targets=['q', 'fc1']: choose among "
                     'q, k, v'),
                    (dict(phm_dim=0), 'KAdaptation: phm_dim and rank must be >= 1, got 0, 1'),
                    (dict(rank=0), 'KAdaptation: phm_dim and rank must be >= 1, got 32, 0')],
    'PATT': [(dict(targets=('k', 'k')), "PATT targets=['k', 'k']: choose distinct roles among "
              'q, k, v'),
             (dict(targets=('proj', )), "PATT targets=['proj']: choose distinct roles among q, "
              'k, v')],
    'LoRand': [(dict(kernel=0), 'LoRand branches, kernel and factor must be >= 1, got')],
    'SNF': [(dict(flow_length=-1), 'SNF flow_length must be >= 0, got -1')],
    'PrefixTuning': [(dict(length=0), 'PrefixTuning length and bottleneck must be >= 1, got 0, '
                      '64'),
                     (dict(bottleneck=0), 'PrefixTuning length and bottleneck must be >= 1, '
                      'got 10, 0'),
                     (dict(mid=0), 'PrefixTuning length and bottleneck must be >= 1, got 10, 0')],
    'Res-Tuning-Bypass': [(dict(bottleneck=0), 'Res-Tuning-Bypass bottleneck must be >= 1, got 0'),
                          (dict(length=0), 'Res-Tuning-Bypass bottleneck must be >= 1, got 0')],
}


@pytest.mark.parametrize('name', list(DEFAULTS))
def test_defaults(name):
    method = PEFT_METHODS.get(name)()
    for key, value in DEFAULTS[name].items():
        got = getattr(method, key)
        got = got.p if isinstance(got, torch.nn.Dropout) else got
        assert (tuple(got) if isinstance(value, tuple) else got) == value, key


@pytest.mark.parametrize('name', list(ERRORS))
def test_errors_name_the_value(name):
    for kwargs, message in ERRORS[name]:
        with pytest.raises(ValueError, match=re.escape(message)):
            PEFT_METHODS.get(name)(**kwargs)


@pytest.mark.parametrize('name', list(TINY))
def test_blocks_selects_the_blocks(tmp_path, name):
    init_default_scope('mmpretrain')
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                              pretrained=path, method=dict(TINY[name], blocks=[1, 3])))
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    plain.eval()
    model.eval()
    seen = {}
    for tag, backbone in (('plain', plain), ('model', model)):
        for i, layer in enumerate(backbone.layers):
            layer.register_forward_pre_hook(
                lambda m, a, key=(tag, i): seen.__setitem__(key + ('in', ), a[0].clone()))
            layer.register_forward_hook(
                lambda m, a, out, key=(tag, i): seen.__setitem__(key + ('out', ), out.clone()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain(x)
        model(x)
        for i in range(4):  # each block of the plain backbone on the model's block input
            seen[('ref', i)] = plain.layers[i](seen[('model', i, 'in')])
    for i in (0, 2):
        assert torch.equal(seen[('model', i, 'out')], seen[('ref', i)]), f'block {i} changed'
    for i in (1, 3):
        assert (seen[('model', i, 'out')] - seen[('ref', i)]).abs().max() > 1e-4, i
    with pytest.raises(ValueError, match=f'^{re.escape(name)} blocks=\\['):
        MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                          method=dict(TINY[name], blocks=[4])))


@pytest.mark.parametrize('name, old, new', [('PATT', 'mid', 'bottleneck'),
                                            ('PrefixTuning', 'mid', 'bottleneck'),
                                            ('Res-Tuning-Bypass', 'length', 'bottleneck')])
def test_former_argument_names_still_work(name, old, new, monkeypatch):
    """Configs written with a former argument name build the same method, with a warning that
    names the new one."""
    import vpetl_mm.peft.base
    logged = []
    monkeypatch.setattr(vpetl_mm.peft.base, 'print_log',
                        lambda message, **kwargs: logged.append((message, kwargs['level'])))
    method = PEFT_METHODS.get(name)(**{old: 7})
    assert getattr(method, new) == 7
    assert logged == [(f'{name}: the argument {old}= is now called {new}= ({old}=7 used); '
                       'rename it in the config', 30)]

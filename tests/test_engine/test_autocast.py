"""``vpetl_mm.AutocastOptimWrapper`` (``tools/train.py --amp`` without a GPU): a training step
of every method under bfloat16 autocast on the CPU."""
import math

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import (ALL_METHODS, TINY_SWIN,  # noqa: E402
                                                             TINY_VIT, batch, classifier_cfg)

# the methods ALL_METHODS lacks, in tiny settings; DyT, GPS and SCT need their runner hooks
# (rate loss, selection pass) and E3VA a dense Swin: they run through tools/train.py elsewhere
METHODS = dict(ALL_METHODS, **{
    'Adapter+': dict(type='Adapter+', bottleneck=4),
    'ARC_att': dict(type='ARC_att', rank=4),
    'LAST': dict(type='LAST', rank=4),
    'LST': dict(type='LST', reduction=4),
    'PrefixTuning': dict(type='PrefixTuning', length=2, bottleneck=4),
    'Res-Tuning': dict(type='Res-Tuning', length=2, bottleneck=4),
    'Res-Tuning-Bypass': dict(type='Res-Tuning-Bypass', bottleneck=2),
    'VPT-shallow': dict(type='VPT-shallow', length=2),
    'VPT-deep': dict(type='VPT-deep', length=2),
})
# methods that refuse a Swin (one width or one sequence across blocks)
VIT_ONLY = ('FacT-TT', 'FacT-TK', 'LAST', 'LST', 'Res-Tuning-Bypass')
CASES = [(m, 'vit') for m in METHODS] + [(m, 'swin') for m in METHODS if m not in VIT_ONLY]


@pytest.mark.parametrize('method, family', CASES)
def test_bf16_training_step_on_the_cpu(method, family):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(classifier_cfg(TINY_VIT if family == 'vit' else TINY_SWIN,
                                        METHODS[method], None))
    wrapper = build_optim_wrapper(model, dict(type='vpetl_mm.AutocastOptimWrapper',
                                              optimizer=dict(type='AdamW', lr=1e-3)))
    with wrapper.optim_context(model):
        logits = model(torch.randn(2, 3, 32, 32), mode='tensor')
    assert logits.dtype == torch.bfloat16
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = model.train_step(batch(), wrapper)['loss']
    assert math.isfinite(loss.item())
    moved = set()
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32, n  # weights and optimizer state stay float32
        if not p.requires_grad:
            assert torch.equal(p, before[n]), f'frozen {n} changed'
        elif not torch.equal(p, before[n]):
            assert torch.isfinite(p).all(), n
            moved.add(n)
    assert any(not n.startswith('head.') for n in moved) or method == 'LinearProbe', moved


def test_wrapper_refuses_a_dtype_that_is_not_one():
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="dtype='bf16' is not a torch dtype"):
        vpetl_mm.engine.AutocastOptimWrapper(dtype='bf16',
                                             optimizer=torch.optim.SGD(params, lr=0.1))

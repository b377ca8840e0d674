"""PATT against its formula: a tanh branch from the attention input onto the chosen rows."""
import copy

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import TINY_VIT  # noqa: E402


@pytest.mark.parametrize('targets', [('k', 'v'), ('q', 'v'), ('q', 'k', 'v')])
def test_patt_rows(targets):
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                              method=dict(type='PATT', bottleneck=4, scale=0.2, targets=targets)))
    model.eval()
    attn = model.layers[0].attn
    with torch.no_grad():
        attn.patt.up.weight.normal_()
        attn.patt.up.bias.normal_()
        x = torch.randn(2, 5, 32)
        out = attn.qkv(x)
        plain = torch.nn.functional.linear(x, attn.qkv.weight, attn.qkv.bias)
        branch = (0.2 * attn.patt.up(torch.tanh(attn.patt.down(x)))).split(32, dim=-1)
        rows = dict(zip(targets, branch))
        for i, role in enumerate('qkv'):
            sl = slice(32 * i, 32 * (i + 1))
            expected = plain[..., sl] + rows[role] if role in rows else plain[..., sl]
            torch.testing.assert_close(out[..., sl], expected, rtol=0, atol=1e-6)


def test_patt_bad_targets():
    init_default_scope('mmpretrain')
    with pytest.raises(ValueError, match="targets=\\['k', 'k'\\]"):
        MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                          method=dict(type='PATT', targets=('k', 'k'))))

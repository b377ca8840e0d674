"""LoRA against its formula: init, formula, defaults, blocks, dropout, errors."""
import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_peft.formulas_reparam import (DIMS, VIT, add_rows, assert_formula,  # noqa: E402
                                              assert_unchanged, assert_uniform, assert_zero, build,
                                              kaiming_bound, normal_, per_block, trainable)
from tests.test_peft.formulas_reparam import scope  # noqa: E402,F401 (autouse)


# -- LoRA: y = W x + b + (alpha / r) B A x on the q and v rows of qkv --------------------------
LORA = dict(type='LoRA', rank=2, alpha=8, targets=('q', 'v'), dropout=0.0)


LORA_SCALE = 8 / 2


def test_lora_init_and_trainable(tmp_path):
    """``A`` (down) kaiming-uniform, ``B`` (up) zero, on q and v of every block, nothing else."""
    plain, model = build(tmp_path, LORA)
    mods = [layer.attn.qkv.get_submodule(f'lora_{t}') for layer in model.layers for t in 'qv']
    assert all(m.down.shape == (2, DIMS) and m.up.shape == (DIMS, 2) for m in mods)
    assert all(m.down.abs().min() > 0 for m in mods)
    assert_uniform([(m.down, kaiming_bound(DIMS)) for m in mods])
    # the draws reach their bound: a narrower init (another gain) fails here
    assert max(m.down.abs().max() for m in mods) > 0.95 * kaiming_bound(DIMS)
    assert_zero(*(m.up for m in mods))
    assert trainable(model) == per_block(*(f'attn.qkv.lora_{t}.{f}' for t in 'qv'
                                           for f in ('down', 'up')))
    assert_unchanged(plain, model)


def lora_hook(qkv):
    """``qkv`` output plus ``(alpha / r) B A x`` on rows ``[0, C)`` (q) and ``[2C, 3C)`` (v)."""
    q, v = qkv.lora_q, qkv.lora_v

    def hook(module, args, out):
        x = args[0]
        return add_rows(out, {0: LORA_SCALE * x @ q.down.t() @ q.up.t(),
                              2 * DIMS: LORA_SCALE * x @ v.down.t() @ v.up.t()})
    return hook


def test_lora_formula(tmp_path):
    """The formula, then the same output from the merged weights, with the plain keys."""
    plain, model = build(tmp_path, LORA)
    hooks = []
    for layer, ref in zip(model.layers, plain.layers):
        normal_(layer.attn.qkv.lora_q.up, layer.attn.qkv.lora_v.up)
        hooks.append((ref.attn.qkv, lora_hook(layer.attn.qkv)))
    assert_formula(plain, model, hooks)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ref = plain(x)[-1]  # still hooked
        model.peft.merge()
        torch.testing.assert_close(model(x)[-1], ref, rtol=1e-9, atol=1e-10)
    assert set(model.state_dict()) == set(plain.state_dict())


def test_lora_defaults_blocks_and_dropout(tmp_path):
    """``alpha`` defaults to ``r`` (scale 1) and ``dropout`` to none; ``blocks`` limits where
    LoRA goes; dropout drops entries of the LoRA input in training only."""
    plain, model = build(tmp_path, dict(type='LoRA', rank=2, targets=('q', 'v'), blocks=(1, )))
    assert [hasattr(layer.attn.qkv, 'lora_q') for layer in model.layers] == [
        False, True, False, False]
    qkv = model.layers[1].attn.qkv
    normal_(qkv.lora_q.up, qkv.lora_v.up)
    q, v = qkv.lora_q, qkv.lora_v

    def hook(module, args, out):  # scale alpha / r = 1
        x = args[0]
        return add_rows(out, {0: x @ q.down.t() @ q.up.t(), 2 * DIMS: x @ v.down.t() @ v.up.t()})
    qkv.train()  # no dropout by default: LoRA in training mode computes the same
    assert_formula(plain, model, [(plain.layers[1].attn.qkv, hook)])

    _, dropped = build(tmp_path, dict(LORA, dropout=0.5))
    qkv = dropped.layers[0].attn.qkv
    normal_(qkv.lora_q.up)
    x = torch.randn(2, 5, DIMS)
    with torch.no_grad():
        dropped.eval()
        base = F.linear(x, qkv.weight, qkv.bias)
        lora_q = LORA_SCALE * x @ qkv.lora_q.down.t() @ qkv.lora_q.up.t()
        torch.testing.assert_close(qkv(x)[..., :DIMS], base[..., :DIMS] + lora_q)
        dropped.train()
        torch.manual_seed(0)
        trained = qkv(x)
        torch.manual_seed(0)  # the same draw: inverted dropout on the LoRA input only
        mask = F.dropout(torch.ones_like(x), 0.5, training=True)
    lora_q = LORA_SCALE * (x * mask) @ qkv.lora_q.down.t() @ qkv.lora_q.up.t()
    assert not torch.equal(mask, torch.ones_like(x))
    torch.testing.assert_close(trained[..., :DIMS], base[..., :DIMS] + lora_q)


def test_lora_errors():
    """Bad settings name the setting."""
    with pytest.raises(ValueError, match='LoRA rank=0: the rank must be >= 1'):
        MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(VIT),
                          method=dict(LORA, rank=0)))
    MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(VIT),
                      method=dict(LORA, rank=1)))  # rank 1 is a rank
    with pytest.raises(ValueError, match=r"LoRA targets=\['q', 'x'\]: unknown roles \['x'\]"):
        MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(VIT),
                          method=dict(LORA, targets=('q', 'x'))))
    with pytest.raises(ValueError, match=r'LoRA targets=\[\]'):
        MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(VIT),
                          method=dict(LORA, targets=())))
    with pytest.raises(ValueError, match=r'LoRA blocks=\[7\]: block 7 is out of range'):
        MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(VIT),
                          method=dict(LORA, blocks=(7, ))))

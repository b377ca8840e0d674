"""FacT-TT and FacT-TK against their formulas: init, formula, defaults, merge."""
import re

import pytest
import torch

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_models import reference  # noqa: E402
from tests.test_peft.formulas_reparam import (CHUNKS, DEPTH, DIMS, LINEARS, add_rows,  # noqa: E402
                                              assert_formula, assert_unchanged, assert_uniform,
                                              assert_zero, build, kaiming_bound, normal_, trainable,
                                              xavier_bound)
from tests.test_peft.formulas_reparam import scope  # noqa: E402,F401 (autouse)
from tests.test_peft.test_ssf import merged_equals_unmerged  # noqa: E402


# -- FacT: dW = s V K U with U, V shared by all blocks, a core K per weight and chunk --------
FACT_RANK, FACT_SCALE = 4, 3.0


SLOTS = 4 + 2 * CHUNKS  # q, k, v, proj, fc1 chunks, fc2 chunks


def fact_hooks(plain, fact, core):
    """The reference hooks of FacT with the ``(r, r)`` core ``core(block, slot)``.

    Slots: q, k, v, proj, then fc1's output chunks and fc2's input chunks (the authors'
    ``Linear(r, mr)`` / ``Linear(mr, r)`` cores split into ``(r, r)`` row / column blocks).
    """
    u, v, s = fact.u, fact.v, FACT_SCALE

    def delta(x, k):
        """``s V K U x``."""
        return s * (x @ u.t() @ k.t()) @ v.t()

    def block_hooks(i):
        """role -> hook of block ``i``."""
        def qkv(m, args, out):
            return add_rows(out, {j * DIMS: delta(args[0], core(i, j)) for j in range(3)})

        def proj(m, args, out):
            return out + delta(args[0], core(i, 3))

        def fc1(m, args, out):
            return add_rows(out, {j * DIMS: delta(args[0], core(i, 4 + j))
                                  for j in range(CHUNKS)})

        def fc2(m, args, out):
            chunks = args[0].split(DIMS, dim=-1)
            h = sum(c @ u.t() @ core(i, 4 + CHUNKS + j).t() for j, c in enumerate(chunks))
            return out + s * h @ v.t()
        return dict(qkv=qkv, proj=proj, fc1=fc1, fc2=fc2)

    return [(ref.get_submodule(LINEARS[role]), hook) for i, ref in enumerate(plain.layers)
            for role, hook in block_hooks(i).items()]


def assert_fact_factors(fact):
    """``U`` ``(r, C)`` with ``nn.Linear``'s default init, ``V`` ``(C, r)`` zero."""
    assert fact.u.shape == (FACT_RANK, DIMS) and fact.v.shape == (DIMS, FACT_RANK)
    assert fact.u.abs().min() > 0
    assert_uniform([(fact.u, kaiming_bound(DIMS))])
    assert_zero(fact.v)


def test_fact_tt_init_and_trainable(tmp_path):
    """Free cores with ``nn.Linear``'s default init: fan-in ``r``, and ``m r`` for fc2's."""
    plain, model = build(tmp_path, dict(type='FacT-TT', rank=FACT_RANK, scale=FACT_SCALE))
    fact = model.peft.methods['fact-tt']
    assert_fact_factors(fact)
    assert fact.cores.shape == (DEPTH, SLOTS, FACT_RANK, FACT_RANK)
    fc2 = 4 + CHUNKS
    assert_uniform([(fact.cores[:, :fc2], kaiming_bound(FACT_RANK))])
    assert_uniform([(fact.cores[:, fc2:], kaiming_bound(CHUNKS * FACT_RANK))])
    assert trainable(model) == {f'peft.methods.fact-tt.{n}' for n in ('u', 'v', 'cores')}
    assert_unchanged(plain, model)


def test_fact_tt_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='FacT-TT', rank=FACT_RANK, scale=FACT_SCALE,
                                        dropout=0.0))
    fact = model.peft.methods['fact-tt']
    normal_(fact.v)
    assert_formula(plain, model, fact_hooks(plain, fact, lambda i, j: fact.cores[i, j]))


@pytest.mark.parametrize('method', ['FacT-TT', 'FacT-TK'])
def test_fact_defaults_errors_dropout_and_merge(tmp_path, method):
    """The authors' defaults (r=8, s=1, dropout 0.1); U reaches nn.Linear's bound on a ViT-B
    width; one width across blocks and an MLP of whole C x C chunks are required, by name; the
    dropout acts on the attention updates too; merge folds every update exactly."""
    from types import SimpleNamespace

    from vpetl_mm.registry import PEFT_METHODS
    cls = PEFT_METHODS.get(method)
    fact = cls()
    assert (fact.rank, fact.scale, fact.dropout.p) == (8, 1.0, 0.1)
    u = reference.vit_b(dict(type=method)).peft.methods[method.lower()].u
    bound = kaiming_bound(768)
    assert u.abs().max() <= bound and u.abs().max() > 0.99 * bound

    def spec(*blocks):
        return SimpleNamespace(blocks=[SimpleNamespace(dims=c, sites=dict(
            fc1=SimpleNamespace(out_features=h))) for c, h in blocks])
    with pytest.raises(ValueError, match=re.escape(
            f'{cls.__name__} shares its factors across blocks, which needs one width; this '
            'backbone has widths [16, 32] (Swin stages)')):
        fact._check(spec((16, 64), (32, 128)))
    with pytest.raises(ValueError, match=f'{cls.__name__}: MLP width 72 is not a multiple of 32'):
        fact._check(spec((32, 72)))
    plain, model = build(tmp_path, dict(type=method, rank=FACT_RANK, scale=FACT_SCALE,
                                        dropout=0.5))
    fact = model.peft.methods[method.lower()]
    normal_(fact.v)
    mlp_slots = slice(4, SLOTS)  # zero MLP cores: only the attention updates remain
    with torch.no_grad():
        if method == 'FacT-TT':
            fact.cores[:, mlp_slots] = 0
        else:
            fact.core_weights.view(FACT_RANK, DEPTH, SLOTS)[:, :, mlp_slots] = 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fact.dropout.train()
        assert not torch.equal(model(x)[-1], model(x)[-1])  # masks on the attention updates
        fact.dropout.eval()
        assert torch.equal(model(x)[-1], model(x)[-1])
    normal_(fact.u, fact.v)
    normal_(*(p for n, p in fact.named_parameters() if n.startswith('core')))
    merged_equals_unmerged(plain, model)


def test_fact_tk_init_and_trainable(tmp_path):
    """Core tensor ``(r, r, r)`` and core weights ``(r, blocks * slots)``, xavier-uniform."""
    plain, model = build(tmp_path, dict(type='FacT-TK', rank=FACT_RANK, scale=FACT_SCALE))
    fact = model.peft.methods['fact-tk']
    assert_fact_factors(fact)
    r = FACT_RANK
    assert fact.core_tensor.shape == (r, r, r)
    assert fact.core_weights.shape == (r, DEPTH * SLOTS)
    assert_uniform([(fact.core_tensor, xavier_bound(r * r, r * r)),
                    (fact.core_weights, xavier_bound(DEPTH * SLOTS, r))])
    assert trainable(model) == {f'peft.methods.fact-tk.{n}'
                                for n in ('u', 'v', 'core_tensor', 'core_weights')}
    assert_unchanged(plain, model)


def test_fact_tk_formula(tmp_path):
    """``K_{b,s}[o, i] = sum_c T[o, i, c] P[c, b S + s]`` (T's first mode on the output side;
    the authors' code reads the attention cores transposed and interleaves the MLP chunks:
    test_fact_tk_authors.py)."""
    plain, model = build(tmp_path, dict(type='FacT-TK', rank=FACT_RANK, scale=FACT_SCALE,
                                        dropout=0.0))
    fact = model.peft.methods['fact-tk']
    normal_(fact.v)

    def core(block, slot):
        return torch.einsum('oic,c->oi', fact.core_tensor,
                            fact.core_weights[:, block * SLOTS + slot])

    assert_formula(plain, model, fact_hooks(plain, fact, core))

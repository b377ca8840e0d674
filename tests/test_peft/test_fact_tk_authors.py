"""FacT-TK against the authors' ``FacT/fact_tk.py`` (JieShibo/PETL-ViT) on the same tensors.

Both build the cores of block ``b`` from one shared tensor: ``T_b = C P[:, b S:(b + 1) S]``
``(r, r, S)``, slots ``q, k, v, proj``, ``m`` fc1 chunks, ``m`` fc2 chunks. They read
``T_b`` differently. Here the authors' forward is restated in plain torch as hooks on a bare
copy of the tiny ViT, fed with FacT-TK's own ``U``, ``V``, ``C`` and ``P``. The two outputs
differ. They agree once FacT-TK's cores are replaced by the re-mapping of :func:`authors_cores`
(forward and merge). For q, k, v and proj that re-mapping is a transpose of ``C``'s first two
modes; for fc1 and fc2 it has no ``(C, P)`` form.
"""
import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402

from tests.test_peft.formulas_reparam import (CHUNKS, DIMS, LINEARS,  # noqa: E402
                                                     build, normal_)

RANK, SCALE = 4, 3.0
SLOTS = 4 + 2 * CHUNKS


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def authors_hooks(plain, u, v, c, p, s):
    """The authors' FacT-TK parameterisation, restated from their ``fact_tk.py`` (not copied).

    ``u`` ``(r, C)`` is their ``FacTu.weight``, ``v`` ``(C, r)`` their ``FacTv.weight``, ``c``
    ``(r, r, r)`` their ``FacTc``, ``p`` ``(r, blocks S)`` their ``FacTp``; ``m`` = ``CHUNKS``
    (4 in their ViT-B). Per block ``b``, ``T = c @ p[:, b S:(b + 1) S]``. Attention slot ``j``:
    ``s (x u^T T[:, :, j]) v^T``. fc1: ``T[:, :, 4:4 + m]`` reshaped to ``(r, m r)``; the
    ``(m r)`` output of ``x u^T @ that`` is cut into ``m`` chunks of ``r``, each mapped by
    ``v``. fc2: ``T[:, :, 4 + m:]`` reshaped to ``(r, m r)``; the fc2 input cut into ``m``
    chunks of ``C``, each mapped by ``u``, concatenated to ``(m r)``, times that matrix
    transposed, then ``v``. Dropout (after the core) is left out: the test runs in eval mode.
    """
    m, r = CHUNKS, u.shape[0]

    def block_hooks(b):
        t = c @ p[:, b * SLOTS:(b + 1) * SLOTS]  # (r, r, S)

        def qkv(mod, args, out):
            parts = [s * (args[0] @ u.t() @ t[:, :, j]) @ v.t() for j in range(3)]
            return out + torch.cat(parts, dim=-1)

        def proj(mod, args, out):
            return out + s * (args[0] @ u.t() @ t[:, :, 3]) @ v.t()

        def fc1(mod, args, out):
            k1 = t[:, :, 4:4 + m].reshape(r, m * r)
            h = (args[0] @ u.t() @ k1).unflatten(-1, (m, r))  # (..., m, r)
            return out + s * (h @ v.t()).flatten(-2)          # (..., m C)

        def fc2(mod, args, out):
            k2 = t[:, :, 4 + m:].reshape(r, m * r)
            h = (args[0].unflatten(-1, (m, DIMS)) @ u.t()).flatten(-2)  # (..., m r)
            return out + s * (h @ k2.t()) @ v.t()
        return dict(qkv=qkv, proj=proj, fc1=fc1, fc2=fc2)

    return [plain.get_submodule(f'layers.{b}.{LINEARS[role]}').register_forward_hook(hook)
            for b in range(len(plain.layers)) for role, hook in block_hooks(b).items()]


def authors_cores(c, p):
    """``(block, slot) -> (r, r)`` core of FacT's ``dW = s V K U`` that reproduces the
    authors' FacT-TK with shared tensors ``c`` and ``p``.

    q, k, v, proj: ``T[:, :, j]`` transposed. fc1 chunk ``a``: columns ``a r:(a + 1) r`` of
    ``T[:, :, 4:4 + m].reshape(r, m r)``, transposed. fc2 chunk ``a``: the same columns of
    ``T[:, :, 4 + m:].reshape(r, m r)``, not transposed. That reshape puts the slot index
    fastest, so column ``b`` of chunk ``a`` is column ``(a r + b) // m`` of slot
    ``(a r + b) % m``.
    """
    m, r = CHUNKS, c.shape[0]

    def core(block, slot):
        t = c @ p[:, block * SLOTS:(block + 1) * SLOTS]
        if slot < 4:
            return t[:, :, slot].t()
        if slot < 4 + m:
            a = slot - 4
            return t[:, :, 4:4 + m].reshape(r, m * r)[:, a * r:(a + 1) * r].t()
        a = slot - 4 - m
        return t[:, :, 4 + m:].reshape(r, m * r)[:, a * r:(a + 1) * r]
    return core


def run(plain, model, hooks=()):
    """``(bare, ours, authors)``: every token after the final norm, float64."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        bare = plain(x)[-1]
        handles = hooks(plain) if hooks else []
        ref = plain(x)[-1]
        out = model(x)[-1]
    for h in handles:
        h.remove()
    return bare, out, ref


@pytest.fixture
def fact_tk(tmp_path):
    """``(plain, model, fact)``: the tiny ViT bare and with FacT-TK (no dropout), float64, with
    non-zero ``V``."""
    plain, model = build(tmp_path, dict(type='FacT-TK', rank=RANK, scale=SCALE, dropout=0.0))
    plain.double()
    model.double()
    fact = model.peft.methods['fact-tk']
    normal_(fact.v)
    assert CHUNKS > 1 and RANK % CHUNKS == 0 and RANK > CHUNKS  # the reshape is not trivial
    return plain, model, fact


def shared(fact):
    return fact.u, fact.v, fact.core_tensor, fact.core_weights


def test_same_tensors_give_different_outputs(fact_tk):
    """Same ``U``, ``V``, ``C``, ``P`` in both: the outputs differ."""
    plain, model, fact = fact_tk
    bare, ours, theirs = run(plain, model, lambda m: authors_hooks(m, *shared(fact), SCALE))
    assert (ours - bare).abs().max() > 1e-2 and (theirs - bare).abs().max() > 1e-2
    assert (ours - theirs).abs().max() > 1e-2


def test_remapped_cores_reproduce_the_authors(fact_tk, monkeypatch):
    """With the cores of :func:`authors_cores`, FacT's forward and merge give the authors'
    output to float64 precision."""
    plain, model, fact = fact_tk
    u, v, c, p = (t.detach().clone() for t in shared(fact))
    monkeypatch.setattr(fact, 'core', authors_cores(c, p))
    hooks = lambda m: authors_hooks(m, u, v, c, p, SCALE)  # noqa: E731
    bare, ours, theirs = run(plain, model, hooks)
    assert (theirs - bare).abs().max() > 1e-2
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
    fact.merge()
    _, merged, theirs = run(plain, model, hooks)
    torch.testing.assert_close(merged, theirs, rtol=1e-9, atol=1e-10)


def test_attention_needs_only_a_transposed_core_tensor(fact_tk):
    """``core_tensor = C.transpose(0, 1)`` gives the authors' q, k, v and proj updates (their
    checkpoints' attention part loads that way); fc1 and fc2 still differ (the reshape)."""
    plain, model, fact = fact_tk
    u, v, c, p = (t.detach().clone() for t in shared(fact))
    with torch.no_grad():
        fact.core_tensor.copy_(c.transpose(0, 1))
    ref = authors_cores(c, p)
    torch.manual_seed(3)
    x = torch.randn(5, DIMS, dtype=torch.float64)
    hid = torch.randn(5, CHUNKS * DIMS, dtype=torch.float64)
    with torch.no_grad():
        for b in range(len(plain.layers)):
            for j in range(4):
                theirs = SCALE * (x @ u.t() @ (c @ p[:, b * SLOTS + j])) @ v.t()
                down, up = fact._attn_factors(b, j)
                torch.testing.assert_close(x @ down.t() @ up.t(), theirs, rtol=1e-9, atol=1e-10)
            fc1 = torch.cat([SCALE * (x @ u.t() @ ref(b, 4 + a).t()) @ v.t()
                             for a in range(CHUNKS)], dim=-1)
            fc2 = SCALE * sum(h @ u.t() @ ref(b, 4 + CHUNKS + a).t()
                              for a, h in enumerate(hid.split(DIMS, dim=-1))) @ v.t()
            assert (fact._fc1_delta(x, b) - fc1).abs().max() > 1e-3
            assert (fact._fc2_delta(hid, b) - fc2).abs().max() > 1e-3

"""Reparameterisable and selection methods against their published formulas, in plain torch.

Each method is built on the tiny mmpretrain ViT through ``PEFTBackbone``. Its zero-initialised
factors are given random values, then its output (every token after the final norm, eval mode,
float64) is compared with a plain copy loaded with the same weights whose forward hooks compute the
method's formula from the method's parameter tensors (``F.linear``, ``@``, ...), never through
the method's modules or helpers. The inits are checked by their values and distributions, and
the trainable parameters against sets computed here from the backbone's structure.
"""
import copy
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models import reference  # noqa: E402
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_VIT,  # noqa: E402
                                                             pretrained_file)

VIT = dict(TINY_VIT, out_type='raw')  # every token of the last block, after the final norm
DIMS, HIDDEN, DEPTH = 32, 64, 4
CHUNKS = HIDDEN // DIMS  # FacT's C x C chunks of the MLP weights
# the linears of a block, by role, as paths inside an mmpretrain ``TransformerEncoderLayer``
LINEARS = dict(qkv='attn.qkv', proj='attn.proj', fc1='ffn.layers.0.0', fc2='ffn.layers.1')


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def build(tmp_path, method):
    """``(plain, model)``: the tiny ViT with the same pretrained weights, bare and with
    ``method``, both in eval mode."""
    plain, path = pretrained_file(tmp_path, VIT)
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(VIT),
                              pretrained=path, method=method))
    plain.eval()
    model.eval()
    return plain, model


def trainable(model):
    """Names of the parameters that require a gradient."""
    return {n for n, p in model.named_parameters() if p.requires_grad}


def per_block(*paths):
    """``layers.<i>.<path>`` for every block and path."""
    return {f'layers.{i}.{p}' for i in range(DEPTH) for p in paths}


def normal_(*tensors, mean=0.0, std=0.2):
    """Overwrite ``tensors`` with N(mean, std^2) draws (a trained, non-trivial state)."""
    with torch.no_grad():
        for t in tensors:
            t.normal_(mean, std)


def assert_formula(plain, model, hooks):
    """The hooks ``(module of plain, hook)`` hold the formula: :func:`reference.assert_formula`
    in float64."""
    reference.assert_formula(
        model, plain, lambda _: [m.register_forward_hook(h) for m, h in hooks], double=True)


def assert_unchanged(plain, model):
    """The method's output equals the bare backbone's, bit for bit."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(x)[-1], plain(x)[-1])


def assert_uniform(pairs):
    """Each tensor of ``(tensor, bound)`` looks drawn from U(-bound, bound): inside its bound,
    with the std ``bound / sqrt(3)`` over all of them (pooled in units of their bounds)."""
    t = torch.cat([x.detach().flatten() / bound for x, bound in pairs])
    assert t.abs().max() <= 1
    assert abs(t.std().item() * math.sqrt(3) - 1) < 0.15


def assert_normal(t, mean, std):
    """``t`` looks drawn from N(mean, std^2)."""
    t = t.detach().flatten()
    assert abs(t.mean().item() - mean) < 4 * std / math.sqrt(t.numel())
    assert abs(t.std().item() / std - 1) < 0.15


def assert_zero(*tensors):
    """Every entry of every tensor is exactly zero."""
    for t in tensors:
        assert not t.any()


def kaiming_bound(fan_in):
    """Bound of ``kaiming_uniform_(a=sqrt(5))`` (``nn.Linear``'s default): 1 / sqrt(fan_in)."""
    gain = math.sqrt(2 / (1 + 5))
    return gain * math.sqrt(3 / fan_in)


def xavier_bound(fan_in, fan_out):
    """Bound of ``xavier_uniform_``: sqrt(6 / (fan_in + fan_out))."""
    return math.sqrt(6 / (fan_in + fan_out))


def linear(x, layer):
    """``x W^T + b`` with the weight and bias tensors of the ``nn.Linear`` ``layer``."""
    return F.linear(x, layer.weight, layer.bias)


def add_rows(out, deltas):
    """``out`` plus ``deltas`` ``{row offset: delta}`` added to those rows only."""
    full = torch.zeros_like(out)
    for start, delta in deltas.items():
        full[..., start:start + delta.shape[-1]] = delta
    return out + full


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


# -- Hydra: out = W x + b + s up(down(x)) + s up'(down'(W x + b)) on proj and fc2 -------------
HYDRA = dict(type='Hydra', rank=2, scale=2.5, dropout=0.0)
HYDRA_SITES = ('proj', 'fc2')


def hydra_modules(model):
    """Every ``(site path, branch name, branch)`` of the model's Hydra."""
    return [(f'layers.{i}.{LINEARS[s]}', b, layer.get_submodule(f'{LINEARS[s]}.hydra.{b}'))
            for i, layer in enumerate(model.layers) for s in HYDRA_SITES for b in ('par', 'seq')]


def test_hydra_init_and_trainable(tmp_path):
    """Down xavier-uniform with a zero bias, up zero (weight and bias), in both branches."""
    plain, model = build(tmp_path, HYDRA)
    branches = hydra_modules(model)
    assert_uniform([(br.down.weight, xavier_bound(br.down.in_features, 2))
                    for _, _, br in branches])
    assert {br.down.in_features for _, b, br in branches if b == 'par'} == {DIMS, HIDDEN}
    assert all(br.down.in_features == DIMS for _, b, br in branches if b == 'seq')
    assert_zero(*(t for _, _, br in branches for t in (br.down.bias, br.up.weight, br.up.bias)))
    assert trainable(model) == {f'{site}.hydra.{b}.{lin}.{w}' for site, b, _ in branches
                                for lin in ('down', 'up') for w in ('weight', 'bias')}
    assert_unchanged(plain, model)


def hydra_hook(hydra):
    """``y + par(x) + seq(y)`` for the linear's input ``x`` and output ``y = W x + b``."""

    def branch(t, br):
        return HYDRA['scale'] * linear(linear(t, br.down), br.up)

    def hook(module, args, out):
        return out + branch(args[0], hydra.par) + branch(out, hydra.seq)
    return hook


def test_hydra_formula(tmp_path):
    plain, model = build(tmp_path, HYDRA)
    hooks = []
    for layer, ref in zip(model.layers, plain.layers):
        for role in HYDRA_SITES:
            hydra = layer.get_submodule(f'{LINEARS[role]}.hydra')
            normal_(hydra.par.down.bias, hydra.par.up.weight, hydra.par.up.bias,
                    hydra.seq.down.bias, hydra.seq.up.weight, hydra.seq.up.bias)
            hooks.append((ref.get_submodule(LINEARS[role]), hydra_hook(hydra)))
    assert_formula(plain, model, hooks)


def test_hydra_defaults_targets_blocks_errors_and_merge(tmp_path):
    """The authors' defaults (rank 2, s=1, no dropout, proj and fc2); any whole linear may be a
    target (here qkv and fc1, in blocks 1 and 3 only); slices and empty targets are refused by
    name; merge folds both branches into their linear exactly."""
    from vpetl_mm.peft.hydra import Hydra
    defaults = Hydra()
    assert (defaults.rank, defaults.scale, defaults.dropout, defaults.targets) == (
        2, 1.0, 0.0, ('proj', 'fc2'))
    plain, model = build(tmp_path, dict(HYDRA, targets=('qkv', 'fc1'), blocks=[1, 3]))
    placed = [[hasattr(layer.get_submodule(LINEARS[r]), 'hydra') for r in LINEARS]
              for layer in model.layers]
    assert placed == [[False] * 4, [True, False, True, False]] * 2
    hooks = []
    for i in (1, 3):
        for role in ('qkv', 'fc1'):
            hydra = model.layers[i].get_submodule(f'{LINEARS[role]}.hydra')
            normal_(hydra.par.down.bias, hydra.par.up.weight, hydra.par.up.bias,
                    hydra.seq.down.bias, hydra.seq.up.weight, hydra.seq.up.bias)
            hooks.append((plain.layers[i].get_submodule(LINEARS[role]), hydra_hook(hydra)))
    assert_formula(plain, model, hooks)
    merged_equals_unmerged(plain, model)
    for targets, bad in ((('q', 'fc2'), ['q']), ((), [])):
        with pytest.raises(ValueError, match=re.escape(
                f'Hydra targets={list(targets)}: choose whole linears among qkv, proj, fc1, fc2 '
                f'(got {bad})')):
            Hydra(targets=targets)
    with pytest.raises(ValueError, match=r'^Hydra blocks=\['):
        build(tmp_path, dict(HYDRA, blocks=[4]))


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


# -- SSF: x * gamma + beta after the patch embedding, every norm and every linear -------------
SSF_SITES = (('patch_embed.projection', 'ln1')
             + tuple(sorted(per_block('ln1', 'ln2', *LINEARS.values()))))


def test_ssf_init_and_trainable(tmp_path):
    """``gamma ~ N(1, 0.02)``, ``beta ~ N(0, 0.02)`` at every site, and no other trainable."""
    plain, model = build(tmp_path, dict(type='SSF'))
    ssfs = [model.get_submodule(f'{site}.ssf') for site in SSF_SITES]
    assert_normal(torch.cat([m.scale for m in ssfs]), 1.0, 0.02)
    assert_normal(torch.cat([m.shift for m in ssfs]), 0.0, 0.02)
    assert trainable(model) == {f'{site}.ssf.{p}' for site in SSF_SITES
                                for p in ('scale', 'shift')}


def ssf_hook(ssf):
    """``out * gamma + beta`` over the channels (dim 1 of a convolution's output, else last)."""

    def hook(module, args, out):
        shape = (1, -1, 1, 1) if isinstance(module, nn.Conv2d) else (-1, )
        return out * ssf.scale.view(shape) + ssf.shift.view(shape)
    return hook


def test_ssf_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='SSF'))
    hooks = []
    for site in SSF_SITES:
        ssf = model.get_submodule(f'{site}.ssf')
        normal_(ssf.scale, mean=1.0, std=0.3)
        normal_(ssf.shift, std=0.3)
        hooks.append((plain.get_submodule(site), ssf_hook(ssf)))
    assert_formula(plain, model, hooks)


def merged_equals_unmerged(plain, model):
    """``merge_and_unload`` leaves a plain backbone (the plain one's parameter names, no hooks
    left) computing what the method computed, in float64."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)).double()
    model.double()
    with torch.no_grad():
        before = model(x)[-1]
        vpetl_mm.merge_and_unload(model)
        after = model(x)[-1]
    assert set(model.state_dict()) == set(plain.state_dict())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.layers.modules())
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-10)


def test_ssf_init_std_merge_and_one_wrap_per_module(tmp_path):
    """``init_std`` sets both draws' std; merge folds every scale-shift into its layer; a module
    reached twice is wrapped once."""
    plain, model = build(tmp_path, dict(type='SSF', init_std=0.1))
    ssfs = [model.get_submodule(f'{site}.ssf') for site in SSF_SITES]
    assert_normal(torch.cat([m.scale for m in ssfs]), 1.0, 0.1)
    assert_normal(torch.cat([m.shift for m in ssfs]), 0.0, 0.1)
    method = model.peft.methods['ssf']
    norm = model.layers[0].ln1
    hooks, wrapped = len(norm._forward_hooks), len(method._wrapped)
    method._wrap_module(model.peft.spec, norm, DIMS, dim=-1)
    assert (len(norm._forward_hooks), len(method._wrapped)) == (hooks, wrapped)
    merged_equals_unmerged(plain, model)


# -- RepAdapter: x + s B(A x + a) + s b on the norm1 / norm2 outputs, B group-wise ------------
REPADAPTER = dict(type='RepAdapter', bottleneck=4, groups=2, scale=1.5, dropout=0.0)
REP_NAMES = ('repadapter_attn', 'repadapter_mlp')


def test_repadapter_init_and_trainable(tmp_path):
    """A xavier-uniform with a zero bias; the group-wise B and its bias zero."""
    plain, model = build(tmp_path, REPADAPTER)
    ads = [getattr(layer, n) for layer in model.layers for n in REP_NAMES]
    assert all(ad.up_weight.shape == (2, DIMS // 2, 4 // 2) for ad in ads)
    assert_uniform([(ad.down.weight, xavier_bound(DIMS, 4)) for ad in ads])
    assert_zero(*(t for ad in ads for t in (ad.down.bias, ad.up_weight, ad.up_bias)))
    assert trainable(model) == per_block(*(f'{n}.{p}' for n in REP_NAMES for p in
                                           ('down.weight', 'down.bias', 'up_weight', 'up_bias')))
    assert_unchanged(plain, model)


def repadapter_hook(ad):
    """``x + s (B (A x + a) + b)`` on the norm output ``x``. B is the authors'
    ``Conv1d(d, C, 1, groups=g)``: output group ``k`` (channels ``k C/g ..``) reads the
    bottleneck channels ``k d/g ..`` through ``up_weight[k]`` ``(C/g, d/g)``."""
    g, d = REPADAPTER['groups'], REPADAPTER['bottleneck']

    def hook(module, args, out):
        z = linear(out, ad.down).split(d // g, dim=-1)
        up = torch.cat([z[k] @ ad.up_weight[k].t() for k in range(g)], dim=-1) + ad.up_bias
        return out + REPADAPTER['scale'] * up
    return hook


def test_repadapter_formula(tmp_path):
    plain, model = build(tmp_path, REPADAPTER)
    hooks = []
    for layer, ref in zip(model.layers, plain.layers):
        for name, norm in zip(REP_NAMES, (ref.ln1, ref.ln2)):
            ad = getattr(layer, name)
            normal_(ad.down.bias, ad.up_weight, ad.up_bias)
            hooks.append((norm, repadapter_hook(ad)))
    assert_formula(plain, model, hooks)


def test_repadapter_defaults_blocks_errors_and_merge(tmp_path):
    """The authors' defaults (d=8, g=2, s=1, dropout 0.1); ``blocks`` places both adapters of
    those blocks only; widths not divisible by the groups and blocks out of range are named;
    merge folds the adapters into qkv / fc1 exactly."""
    from vpetl_mm.peft.repadapter import GroupLinearAdapter, RepAdapter
    defaults = RepAdapter()
    assert (defaults.bottleneck, defaults.groups, defaults.scale, defaults.dropout) == (
        8, 2, 1.0, 0.1)
    assert GroupLinearAdapter(DIMS, 8, 2, 1.0, 0.1).dropout.p == 0.1
    plain, model = build(tmp_path, dict(REPADAPTER, blocks=[1, 3]))
    placed = [[hasattr(layer, n) for n in REP_NAMES] for layer in model.layers]
    assert placed == [[False, False], [True, True], [False, False], [True, True]]
    hooks = []
    for i in (1, 3):
        for name, norm in zip(REP_NAMES, (plain.layers[i].ln1, plain.layers[i].ln2)):
            ad = getattr(model.layers[i], name)
            normal_(ad.down.bias, ad.up_weight, ad.up_bias)
            hooks.append((norm, repadapter_hook(ad)))
    assert_formula(plain, model, hooks)
    merged_equals_unmerged(plain, model)
    for bottleneck, dims in ((6, DIMS), (8, 30)):
        with pytest.raises(ValueError, match=f'RepAdapter: bottleneck {bottleneck} and width '
                           f'{dims} must be divisible by groups=4'):
            GroupLinearAdapter(dims, bottleneck, 4, 1.0, 0.0)
    with pytest.raises(ValueError, match=r'^RepAdapter blocks=\['):
        build(tmp_path, dict(REPADAPTER, blocks=[4]))


# -- ARC: h + (h U diag(s)) U^T + b after norm1 / norm2, U shared by all blocks --------------
ARC_RANK = 4


def arc_hooks(plain, model, key, positions):
    """Reference hooks of ARC (after ``ln1`` for ``attn``, ``ln2`` for ``mlp``), with random
    rescales and biases."""
    shared = model.peft.methods[key].shared

    def arc_hook(u, ad):
        def hook(module, args, out):
            return out + ((out @ u) * ad.rescale) @ u.t() + ad.bias
        return hook

    hooks = []
    for layer, ref in zip(model.layers, plain.layers):
        for position in positions:
            ad = getattr(layer, f'arc_{position}')
            normal_(ad.rescale, ad.bias)
            norm = ref.ln1 if position == 'attn' else ref.ln2
            hooks.append((norm, arc_hook(shared[f'{position}_0'], ad)))
    return hooks


def arc_trainable(key, positions):
    """The shared ``U`` of each position and the per-block rescale and bias."""
    return ({f'peft.methods.{key}.shared.{p}_0' for p in positions}
            | per_block(*(f'arc_{p}.{n}' for p in positions for n in ('rescale', 'bias'))))


def test_arc_init_and_trainable(tmp_path):
    """U xavier-uniform; attention rescale zero (identity), MLP rescale xavier-uniform on a
    ``(1, d)`` tensor; biases zero."""
    plain, model = build(tmp_path, dict(type='ARC', rank=ARC_RANK))
    shared = model.peft.methods['arc'].shared
    assert {k: u.shape for k, u in shared.items()} == {
        'attn_0': (DIMS, ARC_RANK), 'mlp_0': (DIMS, ARC_RANK)}
    assert_uniform([(u, xavier_bound(ARC_RANK, DIMS)) for u in shared.values()])
    assert not torch.equal(shared['attn_0'], shared['mlp_0'])
    mlp_rescale = torch.cat([layer.arc_mlp.rescale for layer in model.layers])
    assert mlp_rescale.shape == (DEPTH, ARC_RANK)
    assert mlp_rescale.abs().min() > 0
    assert mlp_rescale.abs().max() <= xavier_bound(ARC_RANK, 1)
    assert_zero(*(t for layer in model.layers
                  for t in (layer.arc_attn.rescale, layer.arc_attn.bias, layer.arc_mlp.bias)))
    assert trainable(model) == arc_trainable('arc', ('attn', 'mlp'))


def test_arc_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='ARC', rank=ARC_RANK, dropout=0.0))
    assert_formula(plain, model, arc_hooks(plain, model, 'arc', ('attn', 'mlp')))


def test_arc_att_formula_init_and_trainable(tmp_path):
    """ARC_att: the attention-side adapter only, starting as the identity."""
    plain, model = build(tmp_path, dict(type='ARC_att', rank=ARC_RANK, dropout=0.0))
    assert trainable(model) == arc_trainable('arc_att', ('attn', ))
    assert_zero(*(t for layer in model.layers for t in (layer.arc_attn.rescale,
                                                        layer.arc_attn.bias)))
    assert_unchanged(plain, model)
    assert_formula(plain, model, arc_hooks(plain, model, 'arc_att', ('attn', )))


def test_arc_defaults_positions_errors_and_merge(tmp_path):
    """The authors' defaults (d=50, dropout 0.1, both positions; ARC_att the attention one, with
    the dropout it is given); ``positions=('mlp',)`` adapts the MLP input only; unknown or no
    positions are refused by name; merge folds the adapters into qkv / fc1 exactly."""
    from vpetl_mm.peft.arc import ARC, ARCAtt
    assert (ARC().rank, ARC().dropout, ARC().positions) == (50, 0.1, ('attn', 'mlp'))
    assert (ARCAtt().rank, ARCAtt().dropout, ARCAtt().positions) == (50, 0.1, ('attn', ))
    _, att = build(tmp_path, dict(type='ARC_att', rank=ARC_RANK, dropout=0.3))
    assert [layer.arc_attn.dropout.p for layer in att.layers] == [0.3] * DEPTH
    plain, model = build(tmp_path, dict(type='ARC', rank=ARC_RANK, dropout=0.0,
                                        positions=('mlp', )))
    assert not any(hasattr(layer, 'arc_attn') for layer in model.layers)
    assert_formula(plain, model, arc_hooks(plain, model, 'arc', ('mlp', )))
    merged_equals_unmerged(plain, model)
    for positions in (('attn', 'ffn'), ()):
        with pytest.raises(ValueError, match=re.escape(
                f"ARC positions={list(positions)}: choose among 'attn', 'mlp'")):
            ARC(positions=positions)


# -- selection methods: which backbone weights train; the forward is the plain one ------------
def biases(plain):
    """The biases of every linear, convolution and LayerNorm."""
    return {f'{n}.bias' for n, m in plain.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm))}


def layer_norms(plain):
    """Weight and bias of the blocks' ``ln1`` / ``ln2`` and of the final ``ln1``."""
    return per_block(*(f'ln{j}.{p}' for j in (1, 2) for p in ('weight', 'bias'))) | {
        'ln1.weight', 'ln1.bias'}


def last_two_blocks(plain):
    """Every parameter of blocks 2 and 3 (PartialK with k=2), nothing outside the blocks."""
    return {n for n, _ in plain.named_parameters() if n.startswith(('layers.2.', 'layers.3.'))}


SELECTION = {
    'BitFit': (dict(type='BitFit'), biases, 2 * DIMS + DEPTH * (7 * DIMS + HIDDEN)),
    'LNTune': (dict(type='LNTune'), layer_norms, 2 * DIMS * (2 * DEPTH + 1)),
    'PartialK': (dict(type='PartialK', k=2), last_two_blocks,
                 2 * (3 * DIMS * DIMS + DIMS * DIMS + 2 * DIMS * HIDDEN + 9 * DIMS + HIDDEN)),
    'LinearProbe': (dict(type='LinearProbe'), lambda plain: set(), 0),
    'FullFineTune': (dict(type='FullFineTune'),
                     lambda plain: {n for n, _ in plain.named_parameters()}, None),
}


@pytest.mark.parametrize('method', list(SELECTION))
def test_selection_trainable_and_plain_forward(tmp_path, method):
    """Exactly the expected weights train and nothing is added; the forward is the plain
    backbone's, also once the trainable weights have moved (the same offsets in both)."""
    cfg, expected, count = SELECTION[method]
    plain, model = build(tmp_path, cfg)
    names = expected(plain)
    assert trainable(model) == names
    params, plain_params = dict(model.named_parameters()), dict(plain.named_parameters())
    if count is not None:
        assert sum(params[n].numel() for n in names) == count
    assert set(model.state_dict()) == set(plain.state_dict())
    assert_unchanged(plain, model)
    with torch.no_grad():
        for n in names:
            offset = 0.1 * torch.randn_like(params[n])
            params[n].add_(offset)
            plain_params[n].add_(offset)
    assert_unchanged(plain, model)

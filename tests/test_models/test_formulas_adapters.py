"""Adapter-family methods against their published formulas, written out in plain torch.

Each method is built on the tiny mmpretrain ViT through ``PEFTBackbone``; a plain copy loaded
with the same weights gets forward hooks that compute the method's formula from its parameter
tensors (``F.linear``, ``F.gelu``, ``torch.kron``, ...), never through the method's modules.
Both backbones return every token after the final norm, run in eval mode, and have drop-path
replaced by a fixed factor, so that whether a branch sits inside or outside drop-path shows in
the output. The inits are checked by their values and distributions.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_formula  # noqa: E402
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_VIT,  # noqa: E402
                                                             pretrained_file)

VIT = dict(TINY_VIT, out_type='raw')  # every token of the last block, after the final norm
DIMS = 32
LN_EPS = 1e-5  # nn.LayerNorm's default, the authors' adapter norms


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


class FixedDropPath(nn.Module):
    """Stands in for drop-path: a fixed factor on the residual branch it wraps."""

    def forward(self, x):
        return 0.5 * x


def build(tmp_path, method):
    """``(plain, model)``: the tiny ViT with the same pretrained weights, bare and with
    ``method``, both in eval mode with :class:`FixedDropPath` on their attention and MLP
    branches."""
    plain, path = pretrained_file(tmp_path, VIT)
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(VIT),
                              pretrained=path, method=method))
    assert len(plain.layers) == len(model.layers) == 4  # the hooks pair the blocks by zip
    for backbone in (plain, model):
        backbone.eval()
        for layer in backbone.layers:
            layer.attn.out_drop = FixedDropPath()
            layer.ffn.dropout_layer = FixedDropPath()
    return plain, model


def randomize(model, std=0.2):
    """Draw every trainable parameter of ``model`` (the method's) from N(0, std^2)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, std)


def gathered(model, path):
    """The tensors at attribute ``path`` of every block, flattened into one."""
    tensors = []
    for layer in model.layers:
        t = layer
        for name in path.split('.'):
            t = getattr(t, name)
        tensors.append(torch.as_tensor(t).detach().flatten())
    return torch.cat(tensors)


def assert_uniform(t, bound):
    """``t`` looks drawn from U(-bound, bound): inside the bound, reaching it (from 200 draws
    on, a draw above 0.95 of it fails with probability 0.95^200 < 1e-4: another gain fails
    here), with that std."""
    assert t.abs().max() <= bound
    if t.numel() >= 200:
        assert t.abs().max() > 0.95 * bound
    assert abs(t.std().item() / (bound / 3 ** 0.5) - 1) < 0.15


def assert_trunc_normal(t, std):
    """``t`` looks drawn from N(0, std^2) truncated at +-2 std (whose std is 0.88 std)."""
    assert t.abs().max() <= 2 * std
    assert abs(t.std().item() / std - 0.88) < 0.08


def assert_zero(model, *paths):
    """The tensors at ``paths`` are exactly zero in every block."""
    for path in paths:
        assert not gathered(model, path).any(), path


def linear(x, layer):
    """``x W^T + b`` with the weight and bias tensors of ``layer``."""
    return F.linear(x, layer.weight, layer.bias)


def bottleneck(x, down, up, act):
    """``up(act(down(x)))`` from the tensors of the ``down`` and ``up`` linears."""
    return linear(act(linear(x, down)), up)


def layer_norm(x, norm):
    """``LN(x)`` with the affine tensors of ``norm``."""
    return F.layer_norm(x, (x.shape[-1], ), norm.weight, norm.bias, eps=LN_EPS)


# Adapter: m <- m + up(GELU(down(m))) on the MLP output, inside drop-path


def test_adapter_init(tmp_path):
    """``down`` kaiming-uniform with a zero bias, ``up`` exactly zero."""
    _, model = build(tmp_path, dict(type='Adapter', bottleneck=8))
    assert_uniform(gathered(model, 'adapter.down.weight'), DIMS ** -0.5)
    assert_zero(model, 'adapter.down.bias', 'adapter.up.weight', 'adapter.up.bias')


def test_adapter_defaults_blocks_and_errors(tmp_path):
    """The default width is the paper's 8; ``blocks`` places adapters in those blocks only; a
    block out of range names the argument."""
    from vpetl_mm.peft.adapter import Adapter
    assert Adapter().bottleneck == 8
    plain, model = build(tmp_path, dict(type='Adapter', bottleneck=4, blocks=[1, 3]))
    assert [hasattr(layer, 'adapter') for layer in model.layers] == [False, True, False, True]
    randomize(model)

    def register(plain):
        for i in (1, 3):
            ad = model.layers[i].adapter
            plain.layers[i].ffn.layers.register_forward_hook(
                lambda m, a, out, ad=ad: out + bottleneck(out, ad.down, ad.up, F.gelu))
    assert_formula(model, plain, register)
    with pytest.raises(ValueError, match=r'^Adapter blocks=\['):
        build(tmp_path, dict(type='Adapter', blocks=[7]))


def test_adapter_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='Adapter', bottleneck=4))
    randomize(model)

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.ffn.layers.register_forward_hook(
                lambda m, a, out, ad=ours.adapter: out + bottleneck(out, ad.down, ad.up, F.gelu))
    assert_formula(model, plain, register)


# AdaptFormer: y = h + DropPath(MLP(LN2(h))) + s * up(ReLU(down(LN_a(h)))), h post-attention


def test_adaptformer_init(tmp_path):
    """``down`` kaiming-uniform, ``up`` zero, the input LN at (1, 0); a fixed scale is a
    constant, a learnable one a parameter starting at one."""
    _, model = build(tmp_path, dict(type='AdaptFormer', bottleneck=8, scale=0.1))
    assert_uniform(gathered(model, 'adaptformer.down.weight'), DIMS ** -0.5)
    assert_zero(model, 'adaptformer.down.bias', 'adaptformer.up.weight', 'adaptformer.up.bias',
                'adaptformer.norm.bias')
    assert torch.equal(gathered(model, 'adaptformer.norm.weight'), torch.ones(4 * DIMS))
    assert torch.equal(gathered(model, 'adaptformer.scale'), torch.full((4, ), 0.1))
    assert not any('scale' in n for n, _ in model.named_parameters())
    assert not any('scale' in k for k in model.state_dict())  # a constant of the config
    # the kaiming draws reach their bound: another gain fails here
    assert gathered(model, 'adaptformer.down.weight').abs().max() > 0.95 * DIMS ** -0.5
    _, model = build(tmp_path, dict(type='AdaptFormer', scale='learnable', input_norm=False))
    scales = [p for n, p in model.named_parameters() if n.endswith('adaptformer.scale')]
    assert len(scales) == 4 and all(p.requires_grad and p.item() == 1.0 for p in scales)
    assert not any('.adaptformer.norm' in n for n, _ in model.named_parameters())


@pytest.mark.parametrize('input_norm', [True, False])
@pytest.mark.parametrize('scale', [0.1, 'learnable'])
def test_adaptformer_formula(tmp_path, scale, input_norm):
    plain, model = build(tmp_path, dict(type='AdaptFormer', bottleneck=4, scale=scale,
                                        dropout=0.0, input_norm=input_norm))
    randomize(model)

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            af, seen = ours.adaptformer, {}
            s = af.scale if scale == 'learnable' else scale  # randomized: not one
            ref.ln2.register_forward_pre_hook(lambda m, args, seen=seen: seen.update(h=args[0]))

            def add(m, a, out, af=af, s=s, seen=seen):
                h = seen.pop('h')
                h = layer_norm(h, af.norm) if input_norm else h
                return out + s * bottleneck(h, af.down, af.up, F.relu)
            ref.register_forward_hook(add)
    assert_formula(model, plain, register)


def test_adaptformer_blocks_and_errors(tmp_path):
    """``blocks`` limits where the branch goes; bad settings name the setting."""
    _, model = build(tmp_path, dict(type='AdaptFormer', bottleneck=4, blocks=(0, -1)))
    assert [hasattr(layer, 'adaptformer') for layer in model.layers] == [True, False, False,
                                                                          True]
    with pytest.raises(ValueError, match="AdaptFormer scale='big': a number or 'learnable'"):
        build(tmp_path, dict(type='AdaptFormer', scale='big'))
    with pytest.raises(ValueError, match=r'AdaptFormer blocks=\[4\]: block 4 is out of range'):
        build(tmp_path, dict(type='AdaptFormer', blocks=(4, )))


# Adapter+: y <- y + s * DropPath(up(GELU(down(y)))) on the block output (post placement)


def test_adapter_plus_init(tmp_path):
    """Both projections truncated normal (std 0.01, +-0.02), zero biases, scaling ones."""
    _, model = build(tmp_path, dict(type='Adapter+', bottleneck=8))
    for path in ('adapter_plus.down.weight', 'adapter_plus.up.weight'):
        assert_trunc_normal(gathered(model, path), 0.01)
    assert_zero(model, 'adapter_plus.down.bias', 'adapter_plus.up.bias')
    assert torch.equal(gathered(model, 'adapter_plus.scaling'), torch.ones(4 * DIMS))


def test_adapter_plus_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='Adapter+', bottleneck=4))
    randomize(model)

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.register_forward_hook(
                lambda m, a, y, ad=ours.adapter_plus:
                y + ad.scaling * bottleneck(y, ad.down, ad.up, F.gelu))
    assert_formula(model, plain, register)


def test_adapter_plus_defaults_blocks_and_drop_path(tmp_path):
    """Paper defaults (r=8, drop-path 0.1); ``blocks`` places adapters there only; in training
    each sample's branch is dropped or scaled by 1 / (1 - p) (drop-path on the branch alone, the
    block output always kept); a block out of range names the argument."""
    from vpetl_mm.peft.adapter_plus import AdapterPlus
    assert (AdapterPlus().bottleneck, AdapterPlus().drop_path) == (8, 0.1)
    plain, model = build(tmp_path, dict(type='Adapter+', bottleneck=4, drop_path=0.5,
                                        blocks=[3]))
    assert [hasattr(layer, 'adapter_plus') for layer in model.layers] == [False] * 3 + [True]
    randomize(model)
    ad = model.layers[3].adapter_plus
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        bare = plain(x)[0]
        handle = plain.layers[3].register_forward_hook(
            lambda m, a, y: y + 2 * ad.scaling * bottleneck(y, ad.down, ad.up, F.gelu))
        kept = plain(x)[0]
        handle.remove()
        model.train()
        torch.manual_seed(0)
        out = model(x)[0]
    dropped = [torch.allclose(o, b, atol=1e-6) for o, b in zip(out, bare)]
    scaled = [torch.allclose(o, k, rtol=1e-5, atol=1e-6) for o, k in zip(out, kept)]
    assert all(d != s for d, s in zip(dropped, scaled)), (dropped, scaled)
    assert 0 < sum(dropped) < len(x)
    with pytest.raises(ValueError, match=r'^Adapter\+ blocks=\['):
        build(tmp_path, dict(type='Adapter+', blocks=[4]))
    with pytest.raises(ValueError, match='drop path probability 1'):
        build(tmp_path, dict(type='Adapter+', drop_path=1))


# Houlsby: a <- a + up(GELU(down(a))) on the attention projection output, the same on the MLP
# output, both inside their residual branches


def test_houlsby_init(tmp_path):
    """Near identity: every projection truncated normal with std ``init_std`` (1e-2) at two
    stds, zero biases."""
    _, model = build(tmp_path, dict(type='Houlsby', bottleneck=8))
    for adapter in ('adapter_attn', 'adapter_mlp'):
        for proj in ('down', 'up'):
            assert_trunc_normal(gathered(model, f'{adapter}.{proj}.weight'), 1e-2)
            assert_zero(model, f'{adapter}.{proj}.bias')


def test_houlsby_formula(tmp_path):
    plain, model = build(tmp_path, dict(type='Houlsby', bottleneck=4))
    randomize(model)

    def adapted(ad):
        return lambda m, a, out: out + bottleneck(out, ad.down, ad.up, F.gelu)

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.attn.proj.register_forward_hook(adapted(ours.adapter_attn))
            ref.ffn.layers.register_forward_hook(adapted(ours.adapter_mlp))
    assert_formula(model, plain, register)


def test_houlsby_defaults_blocks_and_errors(tmp_path):
    """The paper's defaults (width 8, init std 1e-2); a width of 1 is allowed, 0 refused by
    name; ``blocks`` places both adapters in those blocks only; a block out of range is named."""
    from vpetl_mm.peft.houlsby import HoulsbyAdapter
    assert (HoulsbyAdapter().bottleneck, HoulsbyAdapter().init_std) == (8, 1e-2)
    with pytest.raises(ValueError, match='Houlsby bottleneck must be >= 1, got 0'):
        HoulsbyAdapter(bottleneck=0)
    plain, model = build(tmp_path, dict(type='Houlsby', bottleneck=1, blocks=[1, 3]))
    assert [hasattr(layer, 'adapter_attn') and hasattr(layer, 'adapter_mlp')
            for layer in model.layers] == [False, True, False, True]
    assert not any(hasattr(layer, 'adapter_attn') or hasattr(layer, 'adapter_mlp')
                   for layer in (model.layers[0], model.layers[2]))
    randomize(model)

    def adapted(ad):
        return lambda m, a, out: out + bottleneck(out, ad.down, ad.up, F.gelu)

    def register(plain):
        for i in (1, 3):
            plain.layers[i].attn.proj.register_forward_hook(adapted(model.layers[i].adapter_attn))
            plain.layers[i].ffn.layers.register_forward_hook(adapted(model.layers[i].adapter_mlp))
    assert_formula(model, plain, register)
    with pytest.raises(ValueError, match=r'^Houlsby blocks=\['):
        build(tmp_path, dict(type='Houlsby', blocks=[4]))


# Compacter: m <- m + up(GELU(down(LN(m)))) on the MLP output with PHM projections
# x H + b, H = sum_i A_i (x) L_i R_i, the rule A shared by every layer


def phm(x, layer, rule):
    """The PHM linear ``x H + b`` written out with ``torch.kron``."""
    h = sum(torch.kron(rule[i], layer.left[i] @ layer.right[i]) for i in range(len(rule)))
    return x @ h + layer.bias


def test_compacter_init(tmp_path):
    """The shared rule uniform in [-1, 1]; the factors glorot-uniform except the up
    projection's right factors, which are zero; zero biases; the LN at (1, 0)."""
    _, model = build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=2))
    rule = model.peft.methods['compacter'].phm_rule
    assert rule.shape == (2, 2, 2) and rule.abs().max() <= 1 and rule.abs().max() > 0
    for path, fan_in, fan_out in (('down.left', 1, 16), ('down.right', 4, 1), ('up.left', 1, 4)):
        t = gathered(model, f'compacter.{path}')
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert t.abs().max() <= bound and t.abs().max() > bound / 2, path
    assert_zero(model, 'compacter.up.right', 'compacter.down.bias', 'compacter.up.bias',
                'compacter.norm.bias')
    assert torch.equal(gathered(model, 'compacter.norm.weight'), torch.ones(4 * DIMS))


@pytest.mark.parametrize('input_norm', [True, False])
def test_compacter_formula(tmp_path, input_norm):
    plain, model = build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=2, rank=2,
                                        input_norm=input_norm))
    randomize(model)
    rule = model.peft.methods['compacter'].phm_rule

    def adapted(ad):
        def hook(m, a, out):
            h = layer_norm(out, ad.norm) if input_norm else out
            return out + phm(F.gelu(phm(h, ad.down, rule)), ad.up, rule)
        return hook

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.ffn.layers.register_forward_hook(adapted(ours.compacter))
    assert_formula(model, plain, register)


def test_compacter_defaults_shapes_blocks_and_errors(tmp_path):
    """PEViT's defaults (width 64, n=4, rank 1, input LN); with n=2 and rank 3 every factor
    has the shape its role gives it; the shared rule spreads over [-1, 1]; ``blocks`` places
    the adapters there only; bad widths, n, rank and blocks are refused by name."""
    from vpetl_mm.peft.compacter import Compacter, PHMLinear
    defaults = Compacter()
    assert (defaults.bottleneck, defaults.phm_dim, defaults.rank, defaults.input_norm) == (
        64, 4, 1, True)
    assert Compacter(phm_dim=1).phm_dim == 1
    for n, rank in ((0, 1), (4, 0)):
        with pytest.raises(ValueError, match=f'Compacter: phm_dim and rank must be >= 1, got '
                           f'{n}, {rank}'):
            Compacter(phm_dim=n, rank=rank)
    for args, message in (((30, 8, 4), 'in_features=30'), ((32, 6, 4), 'out_features=6')):
        with pytest.raises(ValueError, match=f'Compacter: {message} is not divisible by '
                           'phm_dim=4'):
            PHMLinear(*args)
    _, model = build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=4))
    rule = model.peft.methods['compacter'].phm_rule
    assert rule.abs().max() <= 1 and rule.min() < -0.5 and rule.max() > 0.5
    plain, model = build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=2, rank=3,
                                        blocks=[1, 3]))
    assert [hasattr(layer, 'compacter') for layer in model.layers] == [False, True] * 2
    ad = model.layers[1].compacter
    assert [tuple(t.shape) for t in (ad.down.left, ad.down.right, ad.up.left, ad.up.right)] == [
        (2, DIMS // 2, 3), (2, 3, 4), (2, 4, 3), (2, 3, DIMS // 2)]
    randomize(model)
    rule = model.peft.methods['compacter'].phm_rule

    def register(plain):
        for i in (1, 3):
            ad = model.layers[i].compacter
            plain.layers[i].ffn.layers.register_forward_hook(
                lambda m, a, out, ad=ad: out + phm(F.gelu(phm(layer_norm(out, ad.norm), ad.down,
                                                              rule)), ad.up, rule))
    assert_formula(model, plain, register)
    with pytest.raises(ValueError, match=r'^Compacter blocks=\['):
        build(tmp_path, dict(type='Compacter', bottleneck=8, phm_dim=2, blocks=[4]))


# DTL: R = sum_{j <= i} B_j A_j x_j over block inputs x_j; after each add-back block
# x <- x + swish(R), swish(R) = R sigmoid(100 R); DTL+ convolves the patch grid of swish(R)
# depthwise (the cls token bypasses it), one convolution shared by the add-back blocks


def test_dtl_init(tmp_path):
    """``A`` kaiming-uniform, ``B`` zero; DTL+'s one depthwise convolution has PyTorch's
    default init (bound 1 / sqrt(k^2)) and no bias."""
    _, model = build(tmp_path, dict(type='DTL+', rank=8, kernel_size=3))
    dtl = model.peft.methods['dtlplus']
    assert list(dtl.side) == ['0', '1', '2', '3'] and list(dtl.fusion) == ['0']
    assert_uniform(torch.cat([dtl.side[i].down.detach().flatten() for i in dtl.side]),
                   DIMS ** -0.5)
    assert all(torch.equal(dtl.side[i].up, torch.zeros(DIMS, 8)) for i in dtl.side)
    conv = dtl.fusion['0']
    assert conv.weight.shape == (DIMS, 1, 3, 3) and conv.bias is None
    assert_uniform(conv.weight.detach(), 1 / 3)


@pytest.mark.parametrize('kernel', [0, 3])
def test_dtl_formula(tmp_path, kernel):
    """The default add-back blocks are the second half (2 and 3 of 4)."""
    method = dict(type='DTL+', kernel_size=kernel) if kernel else dict(type='DTL')
    plain, model = build(tmp_path, dict(method, rank=2))
    randomize(model)
    dtl = model.peft.methods['dtlplus' if kernel else 'dtl']
    side = {}

    def fused(s):
        if not kernel:
            return s
        grid = s[:, 1:].transpose(1, 2).reshape(len(s), DIMS, 4, 4)
        grid = F.conv2d(grid, dtl.fusion['0'].weight, padding=kernel // 2, groups=DIMS)
        return torch.cat([s[:, :1], grid.flatten(2).transpose(1, 2)], 1)

    def accumulate(m, args, lr):
        side['r'] = side['r'] + args[0] @ lr.down.t() @ lr.up.t()

    def register(plain):
        plain.register_forward_pre_hook(lambda m, a: side.update(r=0))
        for i, ref in enumerate(plain.layers):
            ref.register_forward_pre_hook(lambda m, args, lr=dtl.side[str(i)]:
                                          accumulate(m, args, lr))
            if i >= 2:
                ref.register_forward_hook(
                    lambda m, a, y: y + fused(side['r'] * torch.sigmoid(100 * side['r'])))
    assert_formula(model, plain, register)


# PATT: [k, v] += s * up(tanh(down(x))) from the attention input x, beside the frozen qkv


def test_patt_init(tmp_path):
    """``down`` keeps ``nn.Linear``'s init (weight and bias uniform in +-1/sqrt(C)), ``up`` is
    zero."""
    _, model = build(tmp_path, dict(type='PATT', bottleneck=32))
    assert_uniform(gathered(model, 'attn.patt.down.weight'), DIMS ** -0.5)
    assert gathered(model, 'attn.patt.down.bias').abs().max() <= DIMS ** -0.5
    assert_zero(model, 'attn.patt.up.weight', 'attn.patt.up.bias')


@pytest.mark.parametrize('targets', [('k', 'v'), ('q', 'v')])
def test_patt_formula(tmp_path, targets):
    plain, model = build(tmp_path, dict(type='PATT', bottleneck=4, scale=0.3, targets=targets))
    randomize(model)

    def adapted(p):
        def hook(m, args, qkv):
            delta = 0.3 * bottleneck(args[0], p.down, p.up, torch.tanh)
            rows = torch.zeros_like(qkv)
            for i, role in enumerate(targets):  # the branch outputs in q, k, v order
                at = 'qkv'.index(role) * DIMS
                rows[..., at:at + DIMS] = delta[..., i * DIMS:(i + 1) * DIMS]
            return qkv + rows
        return hook

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            ref.attn.qkv.register_forward_hook(adapted(ours.attn.patt))
    assert_formula(model, plain, register)

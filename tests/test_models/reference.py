"""Hand-written reference pieces shared by the method tests: init-distribution checks, the
plain-torch parts of a forward (embedding, LayerNorm, multi-head attention) written from the
backbone's tensors, a fixed drop-path that makes placement visible, a full-width ViT-B for init
statistics, and a count of the activations autograd keeps."""
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import nn


def assert_uniform(t, bound):
    """``t`` looks drawn from U(-bound, bound): inside the bound, with the std bound / sqrt 3."""
    t = t.detach().flatten()
    assert t.abs().max() <= bound
    assert abs(t.std().item() * 3**0.5 / bound - 1) < 0.15


def assert_normal(t, std, mean=0.0):
    """``t`` looks drawn from N(mean, std^2) (a truncation at +-2 absolute changes nothing for
    small ``std``)."""
    t = t.detach().flatten()
    assert abs(t.mean().item() - mean) < 4 * std / t.numel()**0.5
    assert abs(t.std().item() / std - 1) < 0.15


def embed(plain, x):
    """The mmpretrain ViT's block-0 input: patch tokens after cls, plus the position embedding."""
    tokens, _ = plain.patch_embed(x)
    return torch.cat([plain.cls_token.expand(len(x), -1, -1), tokens], 1) + plain.pos_embed


def layer_norm(x, norm):
    """``LN(x)`` from the weight / bias tensors (and eps) of the LayerNorm ``norm``."""
    return F.layer_norm(x, (x.shape[-1], ), norm.weight, norm.bias, norm.eps)


def attention(q_in, kv_in, mha):
    """``nn.MultiheadAttention`` ``mha`` written out from its tensors: per head
    ``softmax(q k^T / sqrt(d)) v`` with ``q, k, v = x W_{q,k,v}^T + b``, heads merged, output
    projection. ``q_in`` ``(B, N, C)``, ``kv_in`` ``(B, M, C)`` -> ``(B, N, C)``."""
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)
    b, n, c = q_in.shape
    heads = mha.num_heads

    def split(t):
        return t.reshape(b, -1, heads, c // heads).transpose(1, 2)

    q, k, v = split(F.linear(q_in, wq, bq)), split(F.linear(kv_in, wk, bk)), split(
        F.linear(kv_in, wv, bv))
    out = torch.softmax(q @ k.transpose(-2, -1) / (c // heads)**0.5, -1) @ v
    return F.linear(out.transpose(1, 2).reshape(b, n, c), mha.out_proj.weight, mha.out_proj.bias)


class FixedDropPath(nn.Module):
    """Stands in for drop-path: a fixed factor on the residual branch it wraps, so that a
    module on the residual stream differs from one inside the branch."""

    def forward(self, x):
        return 0.5 * x


def fix_drop_path(*backbones):
    """Put :class:`FixedDropPath` on the attention and MLP branches of every block of the
    mmpretrain ViTs ``backbones``."""
    for backbone in backbones:
        for layer in backbone.layers:
            layer.attn.out_drop = FixedDropPath()
            layer.ffn.dropout_layer = FixedDropPath()


def vit_b(method):
    """A ViT-B/16 (32 px) wrapped with ``method``, for init statistics over full widths."""
    return MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=method, backbone=dict(
        type='VisionTransformer', arch='b', img_size=32, patch_size=16, init_cfg=None)))


def saved_bytes(model, x, inside_blocks):
    """Bytes autograd saves for backward during a forward, inside the blocks' attention and
    MLP (``inside_blocks``) or anywhere else."""
    state = dict(inside=False, bytes=0)

    def pack(t):
        if state['inside'] == inside_blocks:
            state['bytes'] += t.numel() * t.element_size()
        return t

    handles = []
    for layer in model.backbone.layers:
        for sub in (layer.ln1, layer.attn, layer.ln2, layer.ffn):
            handles.append(sub.register_forward_pre_hook(lambda m, a: state.update(inside=True)))
            handles.append(sub.register_forward_hook(
                lambda m, a, o: state.update(inside=False)))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.backbone(x)[-1].sum()
    for h in handles:
        h.remove()
    return state['bytes']


def assert_formula(model, plain, register, double=False):
    """``register(plain)`` hooks the hand-written formula onto ``plain``, a bare copy of the
    backbone with the same weights: ``model``'s output must equal the hooked copy's and differ
    from the bare backbone's (so a method that does nothing cannot pass).

    With ``double`` both run in float64 and must agree to 1e-9: there the reference's other
    summation order alone cannot come near the tolerance (in float32 it reaches up to 0.9 of
    ``atol=1e-6`` for some methods after the final norm)."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    if double:
        x = x.double()
        plain.double()
        model.double()
    with torch.no_grad():
        bare = plain(x)[-1]
        register(plain)
        ref = plain(x)[-1]
        out = model(x)[-1]
    assert out.shape == bare.shape == (2, 17, 32)
    assert (out - bare).abs().max() > 1e-2
    tolerance = dict(rtol=1e-9, atol=1e-10) if double else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref, **tolerance)

"""The spec's hook points and the attach record on their own (no method): what each hook point
sees and changes, and that each change is recorded, disabled, detached and reattached."""
import copy

import pytest
import torch
from torch import nn

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import TINY_VIT  # noqa: E402
from vpetl_mm.models.specs.base import get_spec  # noqa: E402
from vpetl_mm.models.specs.record import AttachRecord, recording  # noqa: E402


@pytest.fixture
def vit():
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    backbone = MODELS.build(copy.deepcopy(TINY_VIT))
    backbone.init_weights()
    backbone.requires_grad_(False)  # frozen, as PEFTBackbone leaves it
    backbone.eval()
    return backbone, get_spec(backbone), torch.randn(2, 3, 32, 32)


def out(backbone, x):
    with torch.no_grad():
        return backbone(x)[-1].clone()


def hook_counts(module):
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in module.modules()]


def test_on_output_and_on_input_replace_and_observe(vit):
    backbone, spec, x = vit
    block = spec.blocks[1]
    seen = {}
    record = AttachRecord('test')
    with recording(record):
        spec.on_input(block.norm2, lambda h: seen.update(norm2_in=h.shape))  # an observer
        spec.on_output(block.mlp, lambda m: m * 0)  # the MLP branch switched off
    reference = copy.deepcopy(backbone)
    reference.layers[1].ffn.layers.register_forward_hook(lambda mod, a, m: m * 0)
    torch.testing.assert_close(out(backbone, x), out(reference, x), rtol=0, atol=0)
    assert seen['norm2_in'] == (2, 17, 32)  # (B, 1 + 4 x 4 patches, C)
    assert len(record.entries) == 2


def test_on_parallel_adds_a_branch_at_its_target(vit):
    """A branch reading the MLP input (norm2's output) and added at the block output equals an
    MLP whose output gets the same branch added (the MLP branch has no drop-path in eval)."""
    backbone, spec, x = vit
    branch = nn.Linear(32, 32)
    reference = copy.deepcopy(backbone)
    ref_branch = copy.deepcopy(branch)
    spec.on_parallel(spec.blocks[2], 'mlp_input', 'block_output', branch)
    layer = reference.layers[2]
    layer.ffn.layers.register_forward_hook(lambda m, args, o: o + ref_branch(args[0]))
    torch.testing.assert_close(out(backbone, x), out(reference, x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="'mlp_input' comes after the attention residual"):
        spec.on_parallel(spec.blocks[0], 'mlp_input', 'attn_residual', branch)
    with pytest.raises(ValueError, match='sources are'):
        spec.on_parallel(spec.blocks[0], 'fc1', 'block_output', branch)


def test_replace_forward_gets_the_original(vit):
    backbone, spec, x = vit
    before = out(backbone, x)
    calls = []
    record = AttachRecord('test')
    with recording(record):
        spec.replace_forward(spec.blocks[0].mlp,
                             lambda forward, z: calls.append(z.shape) or forward(z))
    torch.testing.assert_close(out(backbone, x), before, rtol=0, atol=0)
    assert calls == [(2, 17, 32)]
    record.detach()
    assert 'forward' not in vars(spec.blocks[0].mlp)


def test_add_module_tune_and_gradient_hook_are_recorded(vit):
    backbone, spec, x = vit
    plain_hooks = hook_counts(backbone)
    bias = spec.blocks[0].sites['fc1'].owner.bias
    original = bias.detach().clone()
    record = AttachRecord('test')
    with recording(record):
        module = spec.add_module(spec.blocks[0].module, 'extra', nn.Linear(2, 2))
        spec.tune(bias)
        spec.on_gradient(bias, lambda g: g * 0)
        spec.on_output(spec.blocks[0].mlp, lambda m: m + module.bias.sum() * 0)
    assert bias.requires_grad and backbone.layers[0].extra is module
    backbone(x)[-1].sum().backward()
    assert torch.equal(bias.grad, torch.zeros_like(bias))  # the gradient hook acts
    with torch.no_grad():
        bias.add_(1.0)  # "trained"
    with pytest.raises(ValueError, match='the name is taken'):
        spec.add_module(spec.blocks[0].module, 'extra', nn.Linear(2, 2))

    record.disable()  # behaviour off, the module stays, the original value shows
    assert torch.equal(bias, original) and not bias.requires_grad
    assert backbone.layers[0].extra is module
    record.enable()
    assert torch.equal(bias, original + 1) and bias.requires_grad
    record.detach()  # everything off
    assert not hasattr(backbone.layers[0], 'extra') and torch.equal(bias, original)
    assert hook_counts(backbone) == plain_hooks
    record.reattach()  # back, with the trained value
    assert backbone.layers[0].extra is module and torch.equal(bias, original + 1)


def test_handle_remove_drops_the_attachment_from_the_record(vit):
    backbone, spec, x = vit
    before = out(backbone, x)
    record = AttachRecord('test')
    with recording(record):
        handle = spec.on_block_output(spec.blocks[3], lambda t, layout: t * 2)
    assert len(record.entries) == 2  # the layout pre-hook and the output hook
    assert not torch.equal(out(backbone, x), before)
    handle.remove()
    assert record.entries == [] and torch.equal(out(backbone, x), before)


def test_spec_release_takes_off_its_own_forwards(vit):
    """The spec's own installs (an attention product wrapper, hooks) leave with release()."""
    backbone, spec, x = vit
    before = out(backbone, x)
    assert any(h != (0, 0) for h in hook_counts(backbone))  # the spec's input / grid hooks
    attn = spec.blocks[0].attn
    product = attn.scaled_dot_product_attention  # mmpretrain sets it on the instance
    spec.on_attention_kv(spec.blocks[0], lambda k, v: (k, v))
    assert attn.scaled_dot_product_attention is not product
    spec.release()
    assert attn.scaled_dot_product_attention is product
    assert not any(k.startswith('_vpetl') for m in backbone.modules() for k in vars(m))
    assert all(h == (0, 0) for h in hook_counts(backbone))
    assert torch.equal(out(backbone, x), before)

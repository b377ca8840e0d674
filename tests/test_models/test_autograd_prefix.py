"""No autograd before the first trainable operation: blocks that run before any trainable
parameter is used keep no tensors for backward, for every method placed on later blocks.

Autograd records an operation only when one of its inputs requires a gradient, so a frozen
block whose input does not require one saves nothing; these tests count what each block
saves and check that the blocks' outputs only start requiring gradients at the first block a
method trains.
"""
import copy

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.test_peft_backbone_mmpretrain import TINY_VIT  # noqa: E402

DEPTH = 4


def saved_per_block(model):
    """``(tensors saved for backward inside each block, whether each block's output requires
    grad)`` over one training forward of ``model``."""
    state = dict(block=None)
    saved = [0] * DEPTH
    grads = [None] * DEPTH
    def leave(i, out):
        grads[i] = out.requires_grad
        state['block'] = None

    handles = []
    for i, layer in enumerate(model.layers):
        handles.append(layer.register_forward_pre_hook(lambda m, a, i=i: state.update(block=i)))
        handles.append(layer.register_forward_hook(lambda m, a, out, i=i: leave(i, out)))

    def pack(t):
        if state['block'] is not None:
            saved[state['block']] += 1
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(2, 3, 32, 32))
    for h in handles:
        h.remove()
    return saved, grads


@pytest.mark.parametrize('method, first', [
    (dict(type='LinearProbe'), DEPTH),
    (dict(type='PartialK', k=1), 3),
    (dict(type='LoRA', rank=2, blocks=[2, 3]), 2),
    (dict(type='Adapter', bottleneck=4, blocks=[1, 3]), 1),
    (dict(type='VPT-deep', length=[0, 0, 0, 2]), 3),
    (dict(type='BitFit'), 0),
])
def test_blocks_before_the_first_trainable_save_nothing(method, first):
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(TINY_VIT),
                              method=method))
    saved, grads = saved_per_block(model)
    assert saved[:first] == [0] * first, saved
    assert all(n > 0 for n in saved[first:]), saved
    assert grads == [False] * first + [True] * (DEPTH - first)

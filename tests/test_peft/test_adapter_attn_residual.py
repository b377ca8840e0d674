"""The Adapter's second placement (``attn_residual=True``, the Mona repository's Adapter
baseline on Swin): ``h <- h + A_attn(h)`` on the stream after the attention residual, next to
``m <- m + A(m)`` on the MLP output, written out in plain torch against the tiny mmpretrain ViT
of the adapter formula tests."""
import pytest
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402

from tests.test_models.reference import assert_formula  # noqa: E402
from tests.test_peft.formulas_adapters import (DIMS, bottleneck, build,  # noqa: E402
                                                      randomize)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def test_adapter_attn_residual_formula(tmp_path):
    """With drop-path a fixed 1/2: ``h = x + DP(Attn(LN1 x))``, ``h <- h + A_attn(h)`` (feeding
    LN2 and the MLP skip), ``y = h + DP(m + A(m))`` with ``m = MLP(LN2 h)``."""
    plain, model = build(tmp_path, dict(type='Adapter', bottleneck=4, dropout=0.1,
                                        attn_residual=True))
    randomize(model)

    def register(plain):
        for ours, ref in zip(model.layers, plain.layers):
            stream = {}
            ref.register_forward_pre_hook(lambda m, args, s=stream: s.update(x=args[0]))
            ref.attn.register_forward_hook(  # x + a + A(x + a) is the new stream
                lambda m, a, out, s=stream, ad=ours.adapter_attn:
                out + bottleneck(s['x'] + out, ad.down, ad.up, F.gelu))
            ref.ffn.layers.register_forward_hook(
                lambda m, a, out, ad=ours.adapter: out + bottleneck(out, ad.down, ad.up, F.gelu))
    assert_formula(model, plain, register)


def test_adapter_attn_residual_modules_and_count(tmp_path):
    """Two bottlenecks per block, each with the dropout after GELU; the count is twice the
    single adapter's; the default keeps the single adapter without dropout."""
    _, model = build(tmp_path, dict(type='Adapter', bottleneck=4, dropout=0.1,
                                    attn_residual=True))
    for layer in model.layers:
        assert layer.adapter.dropout.p == layer.adapter_attn.dropout.p == 0.1
    per_adapter = DIMS * 4 + 4 + 4 * DIMS + DIMS
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * len(model.layers) * per_adapter
    _, single = build(tmp_path, dict(type='Adapter', bottleneck=4))
    assert not any(hasattr(layer, 'adapter_attn') for layer in single.layers)
    assert all(layer.adapter.dropout.p == 0.0 for layer in single.layers)

"""HST: the ViT-B/16 count, the init, the whole forward written out (the meta tokens through
the frozen blocks, the side network), training (side network and the blocks' LayerNorms), the
round trip with the side BatchNorm statistics, errors."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import (assert_normal, assert_uniform, attention,  # noqa: E402
                                         embed, layer_norm)
from tests.test_models.test_peft_backbone_mmpretrain import (TINY_SWIN, TINY_VIT,  # noqa: E402
                                                             batch, pretrained_file)
from vpetl_mm.engine import trainable_state_dict  # noqa: E402

HST = dict(type='HST', dims=(8, 8, 16, 16), num_heads=(2, 2, 2, 2))


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def classifier(path, method=HST, backbone=TINY_VIT):
    return dict(type='ImageClassifier',
                backbone=dict(type='vpetl_mm.PEFTBackbone', backbone=dict(backbone),
                              pretrained=path, method=dict(method)),
                head=dict(type='LinearClsHead', num_classes=5, in_channels=16),
                data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=5))


def test_vit_b16_count():
    with torch.device('meta'):
        bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(type='HST'), backbone=dict(
            type='VisionTransformer', arch='b', img_size=224, init_cfg=None)))
    assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 764840


def conv(x, module, stride, padding=0):
    """A convolution from the tensors of ``module``."""
    return F.conv2d(x, module.weight, module.bias, stride=stride, padding=padding)


def tokens_of(maps):
    """``(B, d, H, W)`` -> ``(B, H * W, d)``."""
    return maps.flatten(2).transpose(1, 2)


def side_block(block, x, g, f):
    """HST's side block from its tensors: ``x += CrossAttn(LN1 x, [g, mean(f)])``,
    ``x += f``, ``x += W2 GELU(W1 LN2 x)``; the attention has two key / value tokens."""
    kv = torch.cat([g, f.mean(1, keepdim=True)], 1)
    x = x + attention(layer_norm(x, block.norm1), kv, block.attn)
    x = x + f
    fc1, fc2 = block.mlp[0], block.mlp[2]
    return x + F.linear(F.gelu(F.linear(layer_norm(x, block.norm2), fc1.weight, fc1.bias)),
                        fc2.weight, fc2.bias)


def hst_by_hand(plain, hst, image):
    """The HST forward (one ViT block per stage) on the plain ViT and the method's tensors:
    meta token ``m_i`` after cls through frozen block ``i``; stage ``i``'s side tokens (the
    stem on the image, else a conv 3x3 s2 + LN on the normed previous stage); the bridge
    ``Linear_i`` on the meta output (then ``LN``) and on the patch map (resized bilinearly);
    one side block; the output ``BN(mean(LN(x_4)))`` with the BN's running statistics."""
    tokens = embed(plain, image)
    grid = plain.patch_resolution
    for i, layer in enumerate(plain.layers):
        meta = hst.meta_tokens[i].expand(len(image), -1, -1)
        out = layer(torch.cat([tokens[:, :1], meta, tokens[:, 1:]], 1))
        tokens = torch.cat([out[:, :1], out[:, 2:]], 1)
        if i == 0:
            stem = hst.stem
            z = F.batch_norm(conv(image, stem.conv1, 2, 1), stem.bn.running_mean,
                             stem.bn.running_var, stem.bn.weight, stem.bn.bias, eps=stem.bn.eps)
            maps = conv(F.relu(z), stem.conv2, 2)
            x = layer_norm(tokens_of(maps), stem.norm)
        else:
            down = hst.downsamples[i - 1]
            prev = layer_norm(x, hst.stage_norms[i - 1]).transpose(1, 2).reshape(
                len(image), -1, *maps.shape[-2:])
            maps = conv(prev, down.conv, 2, 1)
            x = layer_norm(tokens_of(maps), down.norm)
        bridge = hst.bridges[i]
        g = layer_norm(F.linear(out[:, 1:2], bridge.weight, bridge.bias), hst.meta_norms[i])
        f = F.linear(out[:, 2:], bridge.weight, bridge.bias).transpose(1, 2).reshape(
            len(image), -1, *grid)
        f = F.interpolate(f, size=maps.shape[-2:], mode='bilinear', align_corners=False)
        x = side_block(hst.blocks[i], x, g, tokens_of(f))
    pooled = layer_norm(x, hst.stage_norms[-1]).mean(1)
    bn = hst.pool_norm
    return (pooled - bn.running_mean) / (bn.running_var + bn.eps).sqrt()


def test_init():
    """The authors' init: meta tokens xavier-uniform over ``(blocks, C)``; every side linear
    (bridges, attention q / k / v and output, MLPs) truncated-normal std 0.02 with a zero bias;
    convs N(0, 2 / fan_out) with fan_out = k * k * out channels; the norms 1 / 0; the pooling
    BatchNorm non-affine. (Checked on ViT-B with the default widths.)"""
    hst = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', method=dict(type='HST'),
                            backbone=dict(type='VisionTransformer', arch='b', img_size=32,
                                          patch_size=16, init_cfg=None))).peft.methods['hst']
    assert_uniform(hst.meta_tokens, (6 / (12 + 768))**0.5)
    assert hst.meta_tokens.shape == (12, 1, 768)
    linears = [m for m in hst.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4 + 12 * 3  # bridges; per side block attention out, fc1, fc2
    assert_normal(torch.cat([m.weight.detach().flatten() for m in linears]), 0.02)
    assert all(not m.bias.any() for m in linears)
    attns = [m for m in hst.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert len(attns) == 12
    assert_normal(torch.cat([m.in_proj_weight.detach().flatten() for m in attns]), 0.02)
    assert all(not m.in_proj_bias.any() for m in attns)
    convs = [m for m in hst.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 + 3  # stem; one per downsampling
    for conv in convs:
        fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
        assert_normal(conv.weight.detach().flatten(), (2 / fan_out)**0.5)
        assert conv.bias is None or not conv.bias.any()
    norms = [m for m in hst.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()
               for m in norms)
    assert not hst.pool_norm.affine and hst.pool_norm.num_features == 72


def test_formula(tmp_path):
    """Every zero / one-initialised tensor drawn (biases, norms, BatchNorm statistics): the
    wrapped backbone's pooled feature equals :func:`hst_by_hand`."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier(path))
    model.eval()
    hst = model.backbone.peft.methods['hst']
    with torch.no_grad():
        for name, p in hst.named_parameters():
            if 'bias' in name or 'norm' in name or '.bn.' in name:
                p.normal_(1.0 if name.endswith('weight') else 0.0, 0.3)
        for bn in (hst.stem.bn, hst.pool_norm):
            bn.running_mean.normal_(0, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.backbone(x)
        assert len(feats) == 1 and feats[0].shape == (2, 16)
        torch.testing.assert_close(feats[0], hst_by_hand(plain, hst, x), rtol=1e-5, atol=1e-5)


def test_side_network_reads_the_meta_tokens(tmp_path):
    """Side block 0's inputs by hand (a finer view of :func:`test_formula`): the meta token
    after cls through the frozen block, bridged by ``Linear_0`` then its ``LN``; the bridged
    patch map resized to the stem's 8 x 8 grid; bridge bias and norm drawn."""
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier(path))
    model.eval()
    hst = model.backbone.peft.methods['hst']
    bridge, norm = hst.bridges[0], hst.meta_norms[0]
    with torch.no_grad():
        for p in (bridge.bias, norm.bias):
            p.normal_(0, 0.3)
        norm.weight.normal_(1, 0.3)
    seen = []
    hst.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.backbone(x)
        assert len(feats) == 1 and feats[0].shape == (2, 16)
        tokens = embed(plain, x)
        out = plain.layers[0](torch.cat([tokens[:, :1], hst.meta_tokens[0].expand(2, -1, -1),
                                         tokens[:, 1:]], 1))
        g = layer_norm(F.linear(out[:, 1:2], bridge.weight, bridge.bias), norm)
        f = F.linear(out[:, 2:], bridge.weight, bridge.bias).transpose(1, 2).reshape(2, -1, 4, 4)
        f = F.interpolate(f, size=(8, 8), mode='bilinear', align_corners=False)
        x0, g_seen, f_seen = seen[0]
        torch.testing.assert_close(g_seen, g, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(f_seen, tokens_of(f), rtol=1e-5, atol=1e-5)
        assert x0.shape == (2, 64, 8)  # the stem's 8 x 8 grid of a 32 px image


def test_training_and_round_trip(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_VIT)
    model = MODELS.build(classifier(path))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(('head.', 'backbone.peft.methods.hst.')) or '.ln' in n
               for n in trainable)
    assert any('.ln1.' in n for n in trainable)  # the frozen blocks' LayerNorms train
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    for _ in range(2):
        assert torch.isfinite(model.train_step(batch(), optim)['loss'])
    for n, p in model.named_parameters():
        assert p.requires_grad or torch.equal(p, before[n]), n
    saved = trainable_state_dict(model)
    assert any(k.endswith('pool_norm.running_mean') for k in saved)  # BN statistics kept
    fresh = MODELS.build(classifier(path))
    fresh.load_state_dict(saved, strict=False)
    model.eval()
    fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x, mode='tensor'), fresh(x, mode='tensor'))


def test_errors(tmp_path):
    _, path = pretrained_file(tmp_path, TINY_SWIN)
    with pytest.raises(TypeError, match='not a plain image ViT'):
        MODELS.build(classifier(path, backbone=TINY_SWIN))
    _, path = pretrained_file(tmp_path, TINY_VIT)
    with pytest.raises(ValueError, match='4 blocks do not split into 3 stages'):
        MODELS.build(classifier(path, method=dict(type='HST', dims=(8, 8, 8),
                                                  num_heads=(2, 2, 2))))

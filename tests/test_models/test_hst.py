"""HST: the ViT-B/16 count, the meta tokens through the frozen blocks, training (side network and
the blocks' LayerNorms), the round trip with the side BatchNorm statistics, errors."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401
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


def test_side_network_reads_the_meta_tokens(tmp_path):
    plain, path = pretrained_file(tmp_path, TINY_VIT)
    plain.eval()
    model = MODELS.build(classifier(path))
    model.eval()
    hst = model.backbone.peft.methods['hst']
    seen = []
    hst.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.backbone(x)
        assert len(feats) == 1 and feats[0].shape == (2, 16)
        # block 0 by hand: the meta token after cls, through the frozen block
        tokens, grid = plain.patch_embed(x)
        tokens = torch.cat([plain.cls_token.expand(2, -1, -1), tokens], 1) + plain.pos_embed
        out = plain.layers[0](torch.cat([tokens[:, :1], hst.meta_tokens[0].expand(2, -1, -1),
                                         tokens[:, 1:]], 1))
        g = hst.meta_norms[0](hst.bridges[0](out[:, 1:2]))
        f = hst.bridges[0](out[:, 2:]).transpose(1, 2).reshape(2, -1, *grid)
        f = F.interpolate(f, size=(8, 8), mode='bilinear', align_corners=False)
        x0, g_seen, f_seen = seen[0]
        torch.testing.assert_close(g_seen, g, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(f_seen, f.flatten(2).transpose(1, 2), rtol=1e-5, atol=1e-5)
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

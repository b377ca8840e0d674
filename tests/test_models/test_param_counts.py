"""Full-size ViT-B/16 trainable counts (meta device, head excluded) equal the published ones."""
import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import vpetl_mm  # noqa: E402,F401


def trainable(method, backbone=None):
    init_default_scope('mmpretrain')
    backbone = backbone or dict(type='VisionTransformer', arch='b', img_size=224,
                                patch_size=16, init_cfg=None)
    with torch.device('meta'):
        bb = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=backbone, method=method))
    return sum(p.numel() for p in bb.parameters() if p.requires_grad)


@pytest.mark.parametrize('method,count', [
    (dict(type='LoRA', rank=8, targets=('q', 'v')), 294912),
    (dict(type='Adapter', bottleneck=8), 156768),
    (dict(type='DTL', rank=2, add_blocks=tuple(range(6, 12))), 36864),
    (dict(type='DTL+', rank=2, add_blocks=tuple(range(6, 12)), kernel_size=3), 36864 + 6912),
    (dict(type='LinearProbe'), 0),
    (dict(type='FullFineTune'), 85798656),
    (dict(type='BitFit'), 102912),
    (dict(type='LNTune'), 38400),
    (dict(type='AdaptFormer', bottleneck=8), 175200),
    (dict(type='AdaptFormer', bottleneck=8, input_norm=False), 156768),
    (dict(type='PartialK', k=1), 7087872),
    (dict(type='SSF'), 205824),
    (dict(type='RepAdapter', bottleneck=8, groups=2), 239808),
    (dict(type='Hydra', rank=2), 239712),
    (dict(type='FacT-TT', rank=8), 21504),
    (dict(type='FacT-TT', rank=16), 61440),
    (dict(type='FacT-TK', rank=32), 86528),
    (dict(type='FacT-TK', rank=16), 30976),
    (dict(type='Adapter+', bottleneck=8), 165984),
    (dict(type='Adapter+', bottleneck=1), 36876),
    (dict(type='ARC', rank=50), 96432),
    (dict(type='ARC_att', rank=50), 48216),
    (dict(type='Houlsby', bottleneck=8), 313536),
    (dict(type='SCT', top_n=96), 111744),
    (dict(type='KAdaptation'), 50176),
    (dict(type='VPT-shallow', length=100), 76800),
    (dict(type='PATT', bottleneck=32), 903552),
    (dict(type='LST', reduction=8), 2374284),
    (dict(type='HST'), 764840),
    (dict(type='SNF', flow_length=16), 627072),
    (dict(type='SNF', flow_length=0), 36864),
    (dict(type='Res-Tuning-Bypass', bottleneck=10), 387312),
    (dict(type='LAST', rank=16, gap=1), 617472),
    (dict(type='PrefixTuning', length=10, bottleneck=64), 1880832),
    (dict(type='DyT', bottleneck=64), 1198860),
    # BAPAT: AdaptFormer (64, no LN) + PATT (mid 32), V-PETL's 2.06M on VideoMAE ViT-B
    ([dict(type='AdaptFormer', bottleneck=64, input_norm=False), dict(type='PATT', bottleneck=32)],
     1189632 + 903552),
    (dict(type='VPT-deep', length=1), 9216),
    (dict(type='VPT-deep', length=50), 460800),
    (dict(type='Compacter', bottleneck=64, phm_dim=4), 48448),
    (dict(type='Compacter', bottleneck=64, phm_dim=4, input_norm=False), 30016),
])
def test_vit_b16_counts(method, count):
    assert trainable(method) == count


CLIP_B32 = dict(type='VisionTransformer', arch='b', img_size=224, patch_size=32, pre_norm=True,
                norm_cfg=dict(type='LN', eps=1e-5),
                layer_cfgs=dict(act_cfg=dict(type='QuickGELU')), init_cfg=None)


def test_kadaptation_clip_b32_count():
    """KAdaptation's own setting: the CLIP ViT-B/32 image tower, 50,176 (PEViT README's 79,699
    minus the average linear-probe head of its 20 datasets)."""
    assert trainable(dict(type='KAdaptation'), CLIP_B32) == 50176

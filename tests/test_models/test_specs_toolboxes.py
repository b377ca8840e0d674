"""LoRA, Adapter and DTL through the specs of the mmaction, mmseg and mmdet backbones, each
inside its own toolbox's model (Recognizer3D, EncoderDecoder, MaskRCNN)."""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope

import vpetl_mm  # noqa: F401
from vpetl_mm.models import get_peft_state

METHODS = {
    'LoRA': dict(type='LoRA', rank=2, alpha=4, targets=('q', 'v', 'proj', 'fc1')),
    'Adapter': dict(type='Adapter', bottleneck=4),
    'DTL': dict(type='DTL', rank=2, add_blocks=(-1, )),
    'BitFit': dict(type='BitFit'),
    'LNTune': dict(type='LNTune'),
    'AdaptFormer': dict(type='AdaptFormer', bottleneck=4),
    'RepAdapter': dict(type='RepAdapter', bottleneck=4, groups=2),
    'Hydra': dict(type='Hydra', rank=2, dropout=0.1),
    'ARC_att': dict(type='ARC_att', rank=4),
    'Compacter': dict(type='Compacter', bottleneck=4, phm_dim=2),
    'KAdaptation': dict(type='KAdaptation', phm_dim=4),
    'PATT': dict(type='PATT', bottleneck=4, targets=('q', 'v')),
}
OWNS = {
    'LoRA': lambda n: '.lora_' in n,
    'Adapter': lambda n: '.adapter.' in n,
    'DTL': lambda n: 'peft.' in n,
    'BitFit': lambda n: 'bias' in n.rsplit('.', 1)[-1],
    'LNTune': lambda n: 'norm' in n or '.ln' in n,
    'AdaptFormer': lambda n: '.adaptformer.' in n,
    'RepAdapter': lambda n: '.repadapter_' in n,
    'Hydra': lambda n: '.hydra.' in n,
    'ARC_att': lambda n: '.arc_attn.' in n or 'peft.methods.arc' in n,
    'Compacter': lambda n: '.compacter.' in n or 'peft.methods.compacter.' in n,
    'KAdaptation': lambda n: '.kadaptation.' in n or 'peft.methods.kadaptation.' in n,
    'PATT': lambda n: '.patt.' in n,
}


# --- the five families ---------------------------------------------------------------------------
def mmaction_vit():
    backbone = dict(type='VisionTransformer', img_size=32, patch_size=8, embed_dims=32, depth=2,
                    num_heads=2, mlp_ratio=2, num_frames=4, tubelet_size=2, qkv_bias=True,
                    drop_path_rate=0.1, init_cfg=None)
    head = dict(type='TimeSformerHead', num_classes=3, in_channels=32)
    return 'mmaction', backbone, lambda b: recognizer(b, head), video_batch


def mmaction_swin3d():
    backbone = dict(type='SwinTransformer3D', arch=dict(embed_dims=16, depths=[2, 2],
                                                        num_heads=[2, 2]),
                    patch_size=(2, 4, 4), window_size=(2, 4, 4), drop_path_rate=0.1,
                    out_indices=(1, ), init_cfg=None)
    head = dict(type='I3DHead', num_classes=3, in_channels=32)
    return 'mmaction', backbone, lambda b: recognizer(b, head), video_batch


def mmseg_vit():
    backbone = dict(type='VisionTransformer', img_size=(32, 32), patch_size=8, embed_dims=32,
                    num_layers=2, num_heads=2, mlp_ratio=2, out_indices=(1, ),
                    drop_path_rate=0.1, final_norm=True, patch_bias=True, init_cfg=None)
    return 'mmseg', backbone, segmentor, seg_batch


def mmseg_swin():
    backbone = dict(type='SwinTransformer', pretrain_img_size=32, embed_dims=16, depths=(2, 2),
                    num_heads=(2, 2), window_size=4, strides=(4, 2), out_indices=(1, ),
                    drop_path_rate=0.1, init_cfg=None)
    return 'mmseg', backbone, segmentor, seg_batch


def mmdet_swin():
    backbone = dict(type='SwinTransformer', pretrain_img_size=64, embed_dims=16,
                    depths=(2, 2), num_heads=(2, 2), window_size=4, strides=(4, 2),
                    out_indices=(0, 1), drop_path_rate=0.1, init_cfg=None)
    return 'mmdet', backbone, detector, det_batch


FAMILIES = {'mmaction-vit': mmaction_vit, 'mmaction-swin3d': mmaction_swin3d,
            'mmseg-vit': mmseg_vit, 'mmseg-swin': mmseg_swin, 'mmdet-swin': mmdet_swin}


def recognizer(backbone, head):
    return dict(type='Recognizer3D', backbone=backbone, cls_head=head,
                data_preprocessor=dict(type='ActionDataPreprocessor', format_shape='NCTHW'))


def video_batch():
    from mmaction.structures import ActionDataSample
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (1, 3, 4, 32, 32), generator=g, dtype=torch.uint8)
              for _ in range(2)]
    samples = [ActionDataSample().set_gt_label(i) for i in range(2)]
    return dict(inputs=inputs, data_samples=samples), torch.randn(2, 3, 4, 32, 32)


def segmentor(backbone):
    return dict(type='EncoderDecoder', backbone=backbone,
                data_preprocessor=dict(type='SegDataPreProcessor', size=(32, 32)),
                decode_head=dict(type='FCNHead', in_channels=32, channels=8, num_convs=1,
                                 num_classes=3, in_index=-1, concat_input=False,
                                 norm_cfg=None))


def seg_batch():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8)
              for _ in range(2)]
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, 32, 32), generator=g))
        s.set_metainfo(dict(img_shape=(32, 32), ori_shape=(32, 32), pad_shape=(32, 32)))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples), torch.randn(2, 3, 32, 32)


def detector(backbone):
    import os.path as osp

    import mmdet
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'mask_rcnn',
                                   'mask-rcnn_r50_fpn_1x_coco.py')).model
    cfg.backbone = backbone
    cfg.neck.in_channels = [16, 32]
    cfg.neck.out_channels = 16
    cfg.neck.num_outs = 3
    cfg.rpn_head.in_channels = 16
    cfg.rpn_head.feat_channels = 16
    cfg.rpn_head.anchor_generator.strides = [4, 8, 16]
    cfg.roi_head.bbox_roi_extractor.out_channels = 16
    cfg.roi_head.bbox_roi_extractor.featmap_strides = [4, 8, 16]
    cfg.roi_head.bbox_head.in_channels = 16
    cfg.roi_head.bbox_head.fc_out_channels = 32
    cfg.roi_head.mask_roi_extractor.out_channels = 16
    cfg.roi_head.mask_roi_extractor.featmap_strides = [4, 8, 16]
    cfg.roi_head.mask_head.in_channels = 16
    cfg.roi_head.mask_head.conv_out_channels = 16
    cfg.data_preprocessor = dict(type='DetDataPreprocessor', pad_size_divisor=32)
    return cfg


def det_batch():
    from mmdet.testing import demo_mm_inputs
    return (demo_mm_inputs(batch_size=2, image_shapes=(3, 64, 64), num_items=[2, 2],
                           num_classes=80, with_mask=True), torch.randn(2, 3, 64, 64))


# --- helpers -------------------------------------------------------------------------------------
def setup(family, tmp_path):
    scope, backbone_cfg, model_fn, batch_fn = FAMILIES[family]()
    pytest.importorskip({'mmaction': 'mmaction', 'mmseg': 'mmseg', 'mmdet': 'mmdet'}[scope])
    init_default_scope(scope)
    from mmengine.registry import MODELS
    torch.manual_seed(0)
    plain = MODELS.build(copy.deepcopy(backbone_cfg))
    for p in plain.parameters():  # "pretrained" weights, deterministic and non-trivial
        p.data.normal_(0, 0.05) if p.dim() > 1 else p.data.uniform_(-0.1, 0.1)
    path = tmp_path / 'pretrained.pth'
    torch.save({'state_dict': plain.state_dict()}, path)
    plain.eval()

    def build(method):
        wrapped = dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(backbone_cfg),
                       pretrained=str(path), method=copy.deepcopy(method))
        return MODELS.build(model_fn(wrapped))

    return plain, build, batch_fn


def features(backbone, x):
    out = backbone(x)
    out = out if isinstance(out, (tuple, list)) else [out]
    return torch.cat([o.flatten() for o in out])


@pytest.mark.parametrize('method', list(METHODS))
@pytest.mark.parametrize('family', list(FAMILIES))
def test_method_in_toolbox_model(family, method, tmp_path):
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(METHODS[method])
    model.init_weights()
    data, x = batch_fn()

    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(features(model.backbone, x), features(plain, x), rtol=0,
                                   atol=1e-6)

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    in_backbone = {n for n in trainable if n.startswith('backbone.')}
    assert in_backbone and all(OWNS[method](n) for n in in_backbone), in_backbone

    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = set()
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.register_hook(lambda g, n=n: grads.add(n) if g.abs().sum() > 0 else None)
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    params = dict(model.named_parameters())
    for n, p in params.items():
        if n not in trainable:
            assert torch.equal(p, before[n]), f'frozen {n} changed'
    assert grads & in_backbone, 'no method parameter received a gradient'
    assert any(not torch.equal(params[n], before[n]) for n in in_backbone)


@pytest.mark.parametrize('family', list(FAMILIES))
def test_lora_merge_in_toolbox_model(family, tmp_path):
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type='LoRA', rank=2, alpha=4,
                       targets=('q', 'k', 'v', 'proj', 'fc1', 'fc2')))
    torch.manual_seed(1)
    for n, p in model.backbone.named_parameters():
        if '.lora_' in n:
            p.data.normal_(0, 0.2)
    _, x = batch_fn()
    model.eval()
    with torch.no_grad():
        unmerged = features(model.backbone, x)
        assert (unmerged - features(plain, x)).abs().max() > 1e-4
        get_peft_state(model)[0].merge()
        merged = features(model.backbone, x)
    assert (merged - unmerged).abs().max() < 1e-5
    assert set(model.backbone.state_dict()) == set(plain.state_dict())


@pytest.mark.parametrize('family', ['mmaction-vit', 'mmseg-vit'])
def test_patched_attention_equals_original(family, tmp_path):
    """The spec-installed attention forward computes what the toolbox's own forward does."""
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type='LinearProbe'))
    _, x = batch_fn()
    model.eval()
    blocks = get_peft_state(model)[0].spec.blocks
    assert all('forward' in vars(b.attn) for b in blocks)  # the patched forward is installed
    # both run the attention product in SDPA, the toolboxes explicitly: float rounding (~1e-7)
    atol = 1e-6
    with torch.no_grad():
        torch.testing.assert_close(features(model.backbone, x), features(plain, x), rtol=0,
                                   atol=atol)
        for mode in (False, True):  # module level, against the class's own forward
            for b in blocks:
                b.attn.train(mode)
                tokens = torch.randn(2, 5, b.dims)
                # mmaction: (B, N, C); mmseg's inner nn.MultiheadAttention: (L, B, C) q = k = v
                args = (tokens, ) if family == 'mmaction-vit' else (tokens.transpose(0, 1), ) * 3
                patched, original = b.attn(*args), type(b.attn).forward(b.attn, *args)
                if family == 'mmseg-vit':
                    patched, original = patched[0], original[0]
                torch.testing.assert_close(patched, original, rtol=0, atol=atol)
    if family == 'mmseg-vit':  # with a delta, calls the patched path cannot serve are refused
        model = build(dict(type='LoRA', rank=2, targets=('q', 'v')))
        mha = get_peft_state(model)[0].spec.blocks[0].attn
        q = torch.randn(5, 2, mha.embed_dim)
        with pytest.raises(NotImplementedError, match='without masks'):
            mha(q, q, q, attn_mask=torch.zeros(5, 5, dtype=torch.bool))


@pytest.mark.parametrize('family', ['mmaction-vit', 'mmaction-swin3d'])
def test_dtl_plus_on_video_grids(family, tmp_path):
    """DTL+ runs its fusion convolution on each frame of a video grid (its formula on video:
    tests/test_peft/test_dtl.py): a recognizer step trains it."""
    _, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type='DTL+', kernel_size=3, add_blocks=(-1, )))
    data, _ = batch_fn()
    optim = OptimWrapper(torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1))
    model.train()
    losses = model.train_step(data, optim)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert len(model.backbone.peft.methods['dtlplus'].fusion) == 1


@pytest.mark.parametrize('family', ['mmseg-vit', 'mmseg-swin', 'mmdet-swin'])
def test_dtl_plus_on_dense_2d(family, tmp_path):
    """DTL+ on the 2-D dense backbones (mmseg's ViT has a cls prefix that bypasses the conv)."""
    plain, build, batch_fn = setup(family, tmp_path)
    vit = family == 'mmseg-vit'
    model = build(dict(type='DTL+', kernel_size=3, add_blocks=(1, ) if vit else (2, 3)))
    data, x = batch_fn()
    assert set(get_peft_state(model)[0].methods['dtlplus'].fusion) == {'0' if vit else '1'}
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(features(model.backbone, x), features(plain, x), rtol=0,
                                   atol=1e-6)
    model.train()
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])


@pytest.mark.parametrize('family', list(FAMILIES))
def test_ssf_trains_and_merges(family, tmp_path):
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type='SSF', init_std=0.1))
    data, x = batch_fn()
    in_backbone = {n for n, p in model.named_parameters()
                   if p.requires_grad and n.startswith('backbone.')}
    assert in_backbone and all('.ssf.' in n for n in in_backbone)
    model.eval()
    with torch.no_grad():
        unmerged = features(model.backbone, x)
        assert (unmerged - features(plain, x)).abs().max() > 1e-3
    if family == 'mmaction-vit':  # its fused qkv has no bias of its own to take the shift
        with pytest.raises(ValueError, match='no bias of its own'):
            get_peft_state(model)[0].merge()
        with torch.no_grad():  # a refused merge leaves the model as it was
            assert torch.equal(features(model.backbone, x), unmerged)
        return
    with torch.no_grad():
        get_peft_state(model)[0].merge()
        merged = features(model.backbone, x)
    assert (merged - unmerged).abs().max() < 1e-4 * max(1.0, unmerged.abs().max().item())
    assert set(model.backbone.state_dict()) == set(plain.state_dict())
    model = build(dict(type='SSF'))
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, before[n]), n


@pytest.mark.parametrize('method', [dict(type='RepAdapter', bottleneck=4, groups=2, scale=0.5),
                                    dict(type='Hydra', rank=2, scale=0.5, dropout=0.1),
                                    dict(type='ARC', rank=4), dict(type='ARC_att', rank=4),
                                    dict(type='KAdaptation', phm_dim=4, scale=1.0)],
                         ids=['RepAdapter', 'Hydra', 'ARC', 'ARC_att', 'KAdaptation'])
@pytest.mark.parametrize('family', list(FAMILIES))
def test_folding_merge(family, method, tmp_path):
    """Methods folded into linears: merged output equals unmerged (eval), plain keys."""
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(method)
    torch.manual_seed(2)
    for n, p in model.backbone.named_parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.2)
    _, x = batch_fn()
    model.eval()
    with torch.no_grad():
        unmerged = features(model.backbone, x)
        assert (unmerged - features(plain, x)).abs().max() > 1e-3
    if family == 'mmaction-vit' and method['type'] in ('RepAdapter', 'ARC', 'ARC_att',
                                                       'KAdaptation'):
        # the fused qkv's q/v biases live apart from it: no bias to fold the offset into
        with pytest.raises(ValueError, match='no bias of its own'):
            get_peft_state(model)[0].merge()
        return
    with torch.no_grad():
        get_peft_state(model)[0].merge()
        merged = features(model.backbone, x)
    assert (merged - unmerged).abs().max() < 1e-4 * max(1.0, unmerged.abs().max().item())
    assert set(model.backbone.state_dict()) == set(plain.state_dict())


VITS = ['mmaction-vit', 'mmseg-vit']


@pytest.mark.parametrize('method', ['FacT-TT', 'FacT-TK'])
@pytest.mark.parametrize('family', list(FAMILIES))
def test_fact(family, method, tmp_path):
    """FacT on the plain ViTs: identity at init, one step, exact merge; refused on Swin."""
    plain, build, batch_fn = setup(family, tmp_path)
    cfg = dict(type=method, rank=4, scale=0.5)
    if family not in VITS:
        with pytest.raises(ValueError, match='one width'):
            build(cfg)
        return
    model = build(cfg)
    data, x = batch_fn()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(features(model.backbone, x), features(plain, x), rtol=0,
                                   atol=1e-6)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    for n, p in model.named_parameters():
        assert p.requires_grad or torch.equal(p, before[n]), n
    torch.manual_seed(3)
    for n, p in model.backbone.named_parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.6)
    model.eval()
    with torch.no_grad():
        unmerged = features(model.backbone, x)
        assert (unmerged - features(plain, x)).abs().max() > 1e-3
        get_peft_state(model)[0].merge()
        merged = features(model.backbone, x)
    assert (merged - unmerged).abs().max() < 1e-4 * max(1.0, unmerged.abs().max().item())
    assert set(model.backbone.state_dict()) == set(plain.state_dict())


@pytest.mark.parametrize('family', list(FAMILIES))
def test_adapter_plus(family, tmp_path):
    """Adapter+ after every block: its formula on the block output, one step, frozen weights."""
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type='Adapter+', bottleneck=4, drop_path=0.1))
    data, x = batch_fn()
    adapters = [b.module.adapter_plus for b in get_peft_state(model)[0].spec.blocks]
    for a in adapters:  # zero the up projections: then the backbone must be unchanged
        torch.nn.init.zeros_(a.up.weight)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(features(model.backbone, x), features(plain, x), rtol=0,
                                   atol=1e-6)
        for a in adapters:
            a.up.bias.normal_(0, 0.1)  # not constant: a final LayerNorm would remove it
        shifted = features(model.backbone, x)
        assert (shifted - features(plain, x)).abs().max() > 1e-3
    in_backbone = {n for n, p in model.named_parameters()
                   if p.requires_grad and n.startswith('backbone.')}
    assert in_backbone and all('.adapter_plus.' in n for n in in_backbone)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    for n, p in model.named_parameters():
        assert p.requires_grad or torch.equal(p, before[n]), n


@pytest.mark.parametrize('family', list(FAMILIES))
def test_houlsby(family, tmp_path):
    """Houlsby: both adapters in the forward pass (attention one through the proj site), the
    identity when their up projections are zero, one step trains both and nothing frozen."""
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(dict(type='Houlsby', bottleneck=4))
    data, x = batch_fn()
    blocks = [b.module for b in get_peft_state(model)[0].spec.blocks]
    adapters = [m for b in blocks for m in (b.adapter_attn, b.adapter_mlp)]
    model.eval()
    with torch.no_grad():
        assert (features(model.backbone, x) - features(plain, x)).abs().max() > 0
        for a in adapters:
            torch.nn.init.zeros_(a.up.weight)
        torch.testing.assert_close(features(model.backbone, x), features(plain, x), rtol=0,
                                   atol=1e-6)
        for position in ('adapter_attn', 'adapter_mlp'):  # each one alone moves the output
            getattr(blocks[0], position).up.bias.normal_(0, 0.1)
            assert (features(model.backbone, x) - features(plain, x)).abs().max() > 1e-3
            getattr(blocks[0], position).up.bias.zero_()
    in_backbone = {n for n, p in model.named_parameters()
                   if p.requires_grad and n.startswith('backbone.')}
    assert in_backbone and all('.adapter_attn.' in n or '.adapter_mlp.' in n
                               for n in in_backbone)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.isfinite(log_vars['loss'])
    params = dict(model.named_parameters())
    for n, p in params.items():
        assert p.requires_grad or torch.equal(p, before[n]), n
    for position in ('adapter_attn', 'adapter_mlp'):
        moved = [n for n in in_backbone if f'.{position}.up.weight' in n
                 and not torch.equal(params[n], before[n])]
        assert moved, f'no {position} up projection trained'


@pytest.mark.parametrize('method', [dict(type='SCT', top_n=4), dict(type='SCT', top_n=4,
                                                                      mode='mlp'),
                                    dict(type='GPS')], ids=['SCT', 'SCT-mlp', 'GPS'])
@pytest.mark.parametrize('family', ['mmaction-vit', 'mmaction-swin3d'])
def test_selection_methods_in_recognizers(family, method, tmp_path):
    """SCT / GPS select from a video recognizer's labelled batch, then a step moves only what
    they tune; segmentation / detection data carry no class label and are refused clearly."""
    plain, build, batch_fn = setup(family, tmp_path)
    model = build(method)
    data, x = batch_fn()
    state = get_peft_state(model)[0]
    selector = next(iter(state.methods.values()))
    assert not selector.is_selected()
    selector.select(model, iter([model.data_preprocessor(data, False)]))
    assert selector.is_selected()
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-2))
    assert torch.isfinite(model.train_step(data, optim)['loss'])
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith('backbone.') for n in moved)
    if method['type'] == 'SCT':
        assert all('.sct.' in n or not n.startswith('backbone.') for n in moved), moved
    else:
        tuned = {id(w) for w in selector._weights} | {id(b) for b in selector._biases}
        params = dict(model.named_parameters())
        assert all(id(params[n]) in tuned or not n.startswith('backbone.') for n in moved)


def test_selection_refuses_unlabelled_dense_data(tmp_path):
    _, build, batch_fn = setup('mmseg-swin', tmp_path)
    model = build(dict(type='SCT', top_n=4))
    data, _ = batch_fn()
    selector = get_peft_state(model)[0].methods['sct']
    with pytest.raises(TypeError, match='gt_label'):
        selector.select(model, iter([model.data_preprocessor(data, False)]))

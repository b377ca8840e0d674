"""The VideoMAE converter (self-supervised ``encoder.*``, fine-tuned and AdaptFormer split-qkv
layouts -> mmaction ``VisionTransformer``) and its command-line tool; the Video Swin releases,
which load without a converter.

Random tensors under VideoMAE's / AdaptFormer's key names are the source. The reference output
is a plain-torch transcription of their encoders (``modeling_finetune.py``'s ``PatchEmbed``,
sinusoid table, ``Attention`` with the ``cat(q_bias, 0, v_bias)`` bias, ``Block``; AdaptFormer's
``vit_video.py`` attention with its three projections) computed from those source tensors; the
converted file, loaded strictly into mmaction's ``VisionTransformer``, must give it to 1e-5.
"""
import copy
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmaction')
from mmengine.registry import init_default_scope  # noqa: E402

from tools.model_converters import videomae2mmaction  # noqa: E402
from vpetl_mm.models.converters.videomae import (check_videomae_layout,  # noqa: E402
                                                 detect_videomae_layout, sinusoid_table,
                                                 split_videomae)

C, DEPTH, HEADS, PATCH, TUBELET, FRAMES, IMG = 32, 2, 2, 8, 2, 4, 32
GRID = (FRAMES // TUBELET, IMG // PATCH, IMG // PATCH)
TOKENS = GRID[0] * GRID[1] * GRID[2]
DECODER = 16  # the pretraining decoder's width
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'videomae2mmaction.py')


# ---- the source layouts ----

def encoder_tensors(seed=0, split=False, final='norm', layer_scale=False):
    """An encoder under VideoMAE's names (``modeling_finetune.VisionTransformer``, also the
    encoder of ``modeling_pretrain.py``), or AdaptFormer's (``split``: ``attn.q_proj`` /
    ``k_proj`` / ``v_proj`` and ``fc1`` / ``fc2``); ``final`` is ``'norm'`` or ``'fc_norm'``."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, base=0., scale=0.2):
        return base + scale * torch.randn(*shape, generator=gen)

    sd = {'patch_embed.proj.weight': rand(C, 3, TUBELET, PATCH, PATCH),
          'patch_embed.proj.bias': rand(C)}
    for i in range(DEPTH):
        b = f'blocks.{i}.'
        sd[b + 'norm1.weight'], sd[b + 'norm1.bias'] = rand(C, base=1.), rand(C, scale=0.1)
        if split:
            for name in ('q_proj', 'k_proj', 'v_proj'):
                sd[f'{b}attn.{name}.weight'] = rand(C, C)
        else:
            sd[b + 'attn.qkv.weight'] = rand(3 * C, C)
        sd[b + 'attn.q_bias'], sd[b + 'attn.v_bias'] = rand(C), rand(C)
        sd[b + 'attn.proj.weight'], sd[b + 'attn.proj.bias'] = rand(C, C), rand(C)
        sd[b + 'norm2.weight'], sd[b + 'norm2.bias'] = rand(C, base=1.), rand(C, scale=0.1)
        mlp = b + ('' if split else 'mlp.')
        sd[mlp + 'fc1.weight'], sd[mlp + 'fc1.bias'] = rand(4 * C, C), rand(4 * C)
        sd[mlp + 'fc2.weight'], sd[mlp + 'fc2.bias'] = rand(C, 4 * C), rand(C)
        if layer_scale:
            sd[b + 'gamma_1'], sd[b + 'gamma_2'] = rand(C, base=0.5), rand(C, base=0.5)
    sd[final + '.weight'], sd[final + '.bias'] = rand(C, base=1.), rand(C, scale=0.1)
    return sd


def pretrain_checkpoint(split=False):
    """``modeling_pretrain.PretrainVisionTransformer``'s state dict: the encoder under
    ``encoder.``, a (one-block) decoder, ``encoder_to_decoder`` and ``mask_token``."""
    state = {'encoder.' + k: v for k, v in encoder_tensors(split=split).items()}
    state.update({'decoder.blocks.0.norm1.weight': torch.ones(DECODER),
                  'decoder.blocks.0.attn.qkv.weight': torch.zeros(3 * DECODER, DECODER),
                  'decoder.norm.weight': torch.ones(DECODER),
                  'decoder.head.weight': torch.zeros(3 * TUBELET * PATCH * PATCH, DECODER),
                  'decoder.head.bias': torch.zeros(3 * TUBELET * PATCH * PATCH),
                  'encoder_to_decoder.weight': torch.zeros(DECODER, C),
                  'mask_token': torch.zeros(1, 1, DECODER)})
    return state


def finetune_checkpoint(final='fc_norm', layer_scale=False):
    state = encoder_tensors(seed=1, final=final, layer_scale=layer_scale)
    state.update({'head.weight': torch.zeros(7, C), 'head.bias': torch.zeros(7)})
    return state


def adaptformer_model_checkpoint():
    """AdaptFormer's own model (no prefix, ``fc_norm``) with its BatchNorm + Linear head."""
    state = encoder_tensors(seed=2, split=True, final='fc_norm')
    state.update({'head.0.running_mean': torch.zeros(C), 'head.0.running_var': torch.ones(C),
                  'head.0.num_batches_tracked': torch.tensor(0),
                  'head.1.weight': torch.zeros(5, C), 'head.1.bias': torch.zeros(5)})
    return state


def split_like_adaptformer_convert(pretrain):
    """What AdaptFormer's ``convert.py`` does to a VideoMAE pretrain: keep ``encoder.*``, split
    each ``attn.qkv.weight`` into thirds (q, k, v), ``mlp.fc1`` / ``mlp.fc2`` -> ``fc1`` /
    ``fc2``."""
    out = {}
    for key, value in pretrain.items():
        if not key.startswith('encoder.'):
            continue
        if key.endswith('attn.qkv.weight'):
            for name, part in zip(('q_proj', 'k_proj', 'v_proj'), value.chunk(3, dim=0)):
                out[key.replace('qkv', name)] = part.clone()
        else:
            out[key.replace('.mlp.fc', '.fc')] = value
    return out


# ---- the reference: VideoMAE's / AdaptFormer's encoder, transcribed ----

def videomae_table(num_tokens, dims):
    """VideoMAE's ``get_sinusoid_encoding_table``: numpy float64 angles
    ``pos / 10000 ** (2 * (j // 2) / dims)``, sin on even and cos on odd columns, float32."""
    angles = np.arange(num_tokens)[:, None] / np.power(
        10000, 2 * (np.arange(dims)[None] // 2) / dims)
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.tensor(angles, dtype=torch.float32).unsqueeze(0)


def reference_tokens(sd, x, prefix=''):
    """The encoder's tokens after the last block, ``(B, N, C)``, before any final norm."""
    def t(name):
        return sd[prefix + name]

    split = prefix + 'blocks.0.attn.q_proj.weight' in sd
    x = F.conv3d(x, t('patch_embed.proj.weight'), t('patch_embed.proj.bias'),
                 stride=(TUBELET, PATCH, PATCH))
    x = x.flatten(2).transpose(1, 2)
    x = x + videomae_table(x.shape[1], C)
    batch, tokens, _ = x.shape

    def heads(z):
        return z.reshape(batch, tokens, HEADS, C // HEADS).transpose(1, 2)

    for i in range(DEPTH):
        b = f'blocks.{i}.'
        h = F.layer_norm(x, (C, ), t(b + 'norm1.weight'), t(b + 'norm1.bias'), eps=1e-6)
        if split:  # AdaptFormer: q with q_bias, k without bias, v with v_bias
            q = F.linear(h, t(b + 'attn.q_proj.weight'), t(b + 'attn.q_bias'))
            k = F.linear(h, t(b + 'attn.k_proj.weight'))
            v = F.linear(h, t(b + 'attn.v_proj.weight'), t(b + 'attn.v_bias'))
        else:  # VideoMAE: one projection, bias cat(q_bias, zeros, v_bias)
            bias = torch.cat((t(b + 'attn.q_bias'), torch.zeros(C), t(b + 'attn.v_bias')))
            q, k, v = F.linear(h, t(b + 'attn.qkv.weight'), bias).chunk(3, dim=-1)
        q, k, v = heads(q), heads(k), heads(v)
        attn = ((q * (C // HEADS)**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(batch, tokens, C)
        out = F.linear(out, t(b + 'attn.proj.weight'), t(b + 'attn.proj.bias'))
        x = x + (sd[prefix + b + 'gamma_1'] * out if prefix + b + 'gamma_1' in sd else out)
        h = F.layer_norm(x, (C, ), t(b + 'norm2.weight'), t(b + 'norm2.bias'), eps=1e-6)
        mlp = b + ('' if split else 'mlp.')
        out = F.linear(F.gelu(F.linear(h, t(mlp + 'fc1.weight'), t(mlp + 'fc1.bias'))),
                       t(mlp + 'fc2.weight'), t(mlp + 'fc2.bias'))
        x = x + (sd[prefix + b + 'gamma_2'] * out if prefix + b + 'gamma_2' in sd else out)
    return x


def layer_norm(x, sd, name):
    return F.layer_norm(x, (C, ), sd[name + '.weight'], sd[name + '.bias'], eps=1e-6)


def pooled(sd, x, prefix, norm):
    """VideoMAE's mean pooling: ``norm`` (a LayerNorm's key stem) on the token mean."""
    return layer_norm(reference_tokens(sd, x, prefix).mean(1), sd, prefix + norm)


def token_map(sd, x, prefix, norm):
    """Every token through the final ``norm``, as mmaction's ``return_feat_map`` lays it out."""
    tokens = layer_norm(reference_tokens(sd, x, prefix), sd, prefix + norm)
    return tokens.reshape(x.shape[0], *GRID, C).permute(0, 4, 1, 2, 3)


# ---- mmaction ----

def vit_cfg(use_mean_pooling=True, num_frames=FRAMES, **kw):
    return dict(type='VisionTransformer', img_size=IMG, patch_size=PATCH, embed_dims=C,
                depth=DEPTH, num_heads=HEADS, mlp_ratio=4, qkv_bias=True, num_frames=num_frames,
                tubelet_size=TUBELET, norm_cfg=dict(type='LN', eps=1e-6),
                use_mean_pooling=use_mean_pooling, init_cfg=None, **kw)


def mm_vit(state_dict, **kw):
    from mmaction.models.backbones import VisionTransformer
    cfg = vit_cfg(**kw)
    cfg.pop('type')
    model = VisionTransformer(**cfg)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def convert(tmp_path, state, *options, wrapper='model', name='src.pth'):
    """Run the tool on ``state`` (saved under ``wrapper``); ``(saved dict, stdout)``."""
    src, dst = tmp_path / name, tmp_path / 'out' / f'mm_{name}'
    torch.save({wrapper: state} if wrapper else state, src)
    videomae2mmaction.main([str(src), str(dst), '--num-frames', str(FRAMES), '--img-size',
                            str(IMG), *options])
    return torch.load(dst, weights_only=True), str(src)


def clip(seed=5):
    return torch.randn(2, 3, FRAMES, IMG, IMG, generator=torch.Generator().manual_seed(seed))


# (name, source, wrapper, options, layout, mmaction kwargs, expected(source, x), dropped words)
CASES = [
    ('pretrain', pretrain_checkpoint, 'model', [], 'videomae-pretrain', {},
     lambda sd, x: pooled(sd, x, 'encoder.', 'norm'),
     'left out decoder.* (5 tensors), encoder_to_decoder.weight, mask_token'),
    ('pretrain-tokens', pretrain_checkpoint, 'model', ['--final-norm', 'norm'],
     'videomae-pretrain', dict(use_mean_pooling=False, return_feat_map=True),
     lambda sd, x: token_map(sd, x, 'encoder.', 'norm'), 'left out decoder.* (5 tensors)'),
    ('finetune', lambda: finetune_checkpoint(layer_scale=True), 'module', [],
     'videomae-finetune', dict(init_values=0.1), lambda sd, x: pooled(sd, x, '', 'fc_norm'),
     'left out head.* (2 tensors)'),
    ('finetune-no-pooling', lambda: finetune_checkpoint('norm'), None, ['--final-norm', 'norm'],
     'videomae-finetune', dict(use_mean_pooling=False),
     lambda sd, x: layer_norm(reference_tokens(sd, x), sd, 'norm')[:, 0],
     'left out head.* (2 tensors)'),
    ('adaptformer-convert', lambda: split_like_adaptformer_convert(pretrain_checkpoint()),
     'model', [], 'adaptformer-split-qkv', {}, lambda sd, x: pooled(sd, x, 'encoder.', 'norm'),
     'left out nothing'),
    ('adaptformer-model', adaptformer_model_checkpoint, 'state_dict', [],
     'adaptformer-split-qkv', {}, lambda sd, x: pooled(sd, x, '', 'fc_norm'),
     'left out head.* (5 tensors)'),
]


@pytest.mark.parametrize('name, make, wrapper, options, layout, mm_kw, expected, dropped',
                         CASES, ids=[c[0] for c in CASES])
def test_converted_checkpoint_matches_the_source_network(tmp_path, capsys, name, make, wrapper,
                                                         options, layout, mm_kw, expected,
                                                         dropped):
    source = make()
    assert detect_videomae_layout(source) == layout
    saved, src = convert(tmp_path, source, *options, wrapper=wrapper)
    pooling = mm_kw.get('use_mean_pooling', True)
    assert saved['meta'] == {'source': 'src.pth', 'converter': 'videomae2mmaction',
                             'layout': layout, 'use_mean_pooling': pooling}
    out = capsys.readouterr().out
    assert out.startswith(f'{src}: {layout} layout, ') and dropped in out, out
    assert f'depth {DEPTH}, embed dims {C}, tubelet {TUBELET}, patch {PATCH}' in out
    assert (f'pos_embed sinusoid for {FRAMES} frames at {IMG} px ({TOKENS} tokens)') in out
    assert ('fc_norm, use_mean_pooling=True' if pooling else 'norm, use_mean_pooling=False') in out
    model = mm_vit(saved['state_dict'], **mm_kw)
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected(source, x), rtol=1e-5, atol=1e-5)


def test_position_table_is_videomae_s():
    torch.testing.assert_close(sinusoid_table(TOKENS, C), videomae_table(TOKENS, C),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(sinusoid_table(1568, 768), videomae_table(1568, 768),
                               rtol=0, atol=1e-6)
    from mmaction.models.backbones.vit_mae import get_sinusoid_encoding
    torch.testing.assert_close(sinusoid_table(1568, 768), get_sinusoid_encoding(1568, 768),
                               rtol=0, atol=1e-6)
    converted, _ = split_videomae(pretrain_checkpoint())  # defaults: 16 frames at 224 px
    assert converted['pos_embed'].shape == (1, 8 * 28 * 28, C)


def test_split_and_fused_forms_convert_to_the_same_tensors():
    pretrain = pretrain_checkpoint()
    fused, dropped = split_videomae(pretrain, FRAMES, IMG)
    split, none = split_videomae(split_like_adaptformer_convert(pretrain), FRAMES, IMG)
    assert sorted(dropped) == sorted(k for k in pretrain if not k.startswith('encoder.'))
    assert none == {}
    assert list(fused) == list(split)
    for key, value in fused.items():
        assert value.dtype == torch.float32 and torch.equal(split[key], value), key
    assert list(fused) == list(mm_vit(fused).state_dict())  # mmaction's own order


def test_learned_position_table_is_kept():
    state = finetune_checkpoint()
    state['pos_embed'] = torch.randn(1, TOKENS, C)
    converted, _ = split_videomae(state, num_frames=16, img_size=224)
    assert torch.equal(converted['pos_embed'], state['pos_embed'])
    mm_vit(converted, use_learnable_pos_emb=True)


def _peft_backbone(path, **kw):
    from mmengine.registry import MODELS
    init_default_scope('mmaction')
    return MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=vit_cfg(**kw),
                             pretrained=path, method=dict(type='LinearProbe'))).eval()


def test_converted_pretrain_loads_through_peft_backbone(tmp_path):
    """The file loads into ``PEFTBackbone`` as ``configs/_base_/models/videomae-vit-b16.py``
    builds it (mean pooling); written for 16 frames (the default), it loads into a 4-frame
    backbone, which keeps its own table (the first rows of VideoMAE's), same output."""
    source = pretrain_checkpoint()
    src = tmp_path / 'pretrain.pth'
    torch.save({'model': source}, src)
    x = clip()
    expected = pooled(source, x, 'encoder.', 'norm')
    for frames in (str(FRAMES), '16'):
        dst = tmp_path / f'mm_{frames}.pth'
        videomae2mmaction.main([str(src), str(dst), '--num-frames', frames, '--img-size',
                                str(IMG)])
        model = _peft_backbone(str(dst))
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    table = torch.load(tmp_path / 'mm_16.pth', weights_only=True)['state_dict']['pos_embed']
    assert table.shape == (1, 8 * GRID[1] * GRID[2], C)


def test_tool_runs_as_a_script(tmp_path):
    """``python tools/model_converters/videomae2mmaction.py`` from another folder: the converter
    module is found by path."""
    src, dst = tmp_path / 'pretrain.pth', tmp_path / 'mm.pth'
    torch.save({'model': pretrain_checkpoint()}, src)
    run = subprocess.run([sys.executable, TOOL, str(src), str(dst), '--num-frames', str(FRAMES),
                          '--img-size', str(IMG)], cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert 'videomae-pretrain layout' in run.stdout
    assert torch.equal(torch.load(dst, weights_only=True)['state_dict']['fc_norm.weight'],
                       pretrain_checkpoint()['encoder.norm.weight'])


def _mm_state():
    return mm_vit(split_videomae(finetune_checkpoint(), FRAMES, IMG)[0]).state_dict()


def _refused():
    """``(name, state dict, layout, words the message must hold)``."""
    mixed = encoder_tensors()
    mixed['blocks.1.attn.q_proj.weight'] = torch.zeros(C, C)
    return [
        ('mmaction', _mm_state(), 'mmaction', 'needs no conversion'),
        ('mmaction-recognizer', {'backbone.' + k: v for k, v in _mm_state().items()},
         'mmaction', 'needs no conversion'),
        ('video-swin', video_swin_release(), 'video-swin', 'Video Swin layout'),
        ('hf', {'videomae.embeddings.patch_embeddings.projection.weight': torch.zeros(1),
                'videomae.encoder.layer.0.attention.attention.query.weight': torch.zeros(1)},
         'hf-transformers-videomae', 'HuggingFace transformers VideoMAE'),
        ('garbage', {'foo.weight': torch.zeros(1), 'bar.bias': torch.zeros(1)}, 'unknown',
         "unknown layout: not a VideoMAE (pretrain / fine-tuned) or AdaptFormer state dict; "
         "first keys: 'foo.weight', 'bar.bias'"),
        ('mixed', mixed, 'unknown', 'attn.qkv as well as attn.q_proj'),
    ]


def test_refused_layouts_are_named(tmp_path, capsys):
    for name, state, layout, words in _refused():
        assert detect_videomae_layout(state) == layout, name
        with pytest.raises(ValueError) as err:
            check_videomae_layout(state)
        assert words in str(err.value), (name, str(err.value))
        with pytest.raises(ValueError) as err:
            split_videomae(state)
        assert words in str(err.value), (name, str(err.value))
        _refused_by_cli(tmp_path, capsys, name, state, words)


def _refused_by_cli(tmp_path, capsys, name, state, words):
    src, dst = tmp_path / f'{name}.pth', tmp_path / f'{name}_out.pth'
    torch.save({'state_dict': state}, src)
    with pytest.raises(SystemExit) as exit_:
        videomae2mmaction.main([str(src), str(dst)])
    assert exit_.value.code == 1, name
    err = capsys.readouterr().err
    assert err.startswith(f'videomae2mmaction: error: {src}: '), (name, err)
    assert words in err, (name, err)
    assert not osp.exists(dst), name


def test_bad_keys_in_a_known_layout_are_named(tmp_path, capsys):
    adapter = adaptformer_model_checkpoint()
    adapter['blocks.0.adaptmlp.down_proj.weight'] = torch.zeros(4, C)
    both = finetune_checkpoint()
    both['norm.weight'], both['norm.bias'] = torch.ones(C), torch.zeros(C)
    partial = split_like_adaptformer_convert(pretrain_checkpoint())
    del partial['encoder.blocks.1.attn.k_proj.weight']
    stray = pretrain_checkpoint()
    stray['teacher.blocks.0.norm1.weight'] = torch.ones(C)
    no_norm = finetune_checkpoint()
    del no_norm['fc_norm.weight'], no_norm['fc_norm.bias']
    for name, state, words in [
            ('adapter', adapter, "unknown key 'blocks.0.adaptmlp.down_proj.weight'"),
            ('both-norms', both, 'norm and fc_norm are both present'),
            ('partial', partial, 'missing key encoder.blocks.1.attn.k_proj.weight'),
            ('stray', stray, "unknown key 'teacher.blocks.0.norm1.weight'"),
            ('no-norm', no_norm, 'missing key norm.weight (or fc_norm.weight)')]:
        assert detect_videomae_layout(state) != 'unknown', name
        _refused_by_cli(tmp_path, capsys, name, state, words)
    with pytest.raises(ValueError, match='final_norm='):
        split_videomae(finetune_checkpoint(), final_norm='ln1')


# ---- Video Swin: the release loads as it is ----

SWIN = dict(type='SwinTransformer3D', arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2]),
            pretrained=None, pretrained2d=False, patch_size=(2, 4, 4), window_size=(2, 4, 4),
            patch_norm=True, out_indices=(1, ), init_cfg=None)


def _swin():
    from mmengine.registry import MODELS
    init_default_scope('mmaction')
    model = MODELS.build(copy.deepcopy(SWIN))
    model.eval()  # not chained: SwinTransformer3D.train() returns None
    return model


def video_swin_release(model=None):
    """A Video-Swin-Transformer release (``swin_base_patch244_window877_kinetics400_22k.pth``):
    an mmaction 0.x recognizer, ``backbone.*`` with the output norm named ``norm`` (mmaction
    1.x: ``norm{last out index}``) and the relative-position index buffers, ``cls_head.*``."""
    model = model or _swin()
    state = {'backbone.' + ('norm.' + k[len('norm1.'):] if k.startswith('norm1.') else k): v
             for k, v in model.state_dict().items()}
    assert 'backbone.layers.1.blocks.1.attn.relative_position_index' in state
    state['cls_head.fc_cls.weight'] = torch.zeros(3, 32)
    state['cls_head.fc_cls.bias'] = torch.zeros(3)
    return state


def test_video_swin_release_loads_without_conversion(tmp_path):
    """``PEFTBackbone(pretrained=RELEASE, pretrained_prefix='backbone.')`` takes every backbone
    weight of the release and computes what mmaction's ``SwinTransformer3D`` computes with them;
    the spec's ``norm`` -> ``norm1`` rename leaves nothing unexpected and nothing missing."""
    from vpetl_mm.models.specs import get_spec
    torch.manual_seed(0)
    reference = _swin()
    for p in reference.parameters():
        p.data.uniform_(-0.2, 0.2)
    release = video_swin_release(reference)
    src = tmp_path / 'swin_base_patch244_window877_kinetics400_22k.pth'
    torch.save({'meta': {'mmaction2_version': '0.18.0'}, 'state_dict': release}, src)

    fresh = _swin()
    backbone = {k[len('backbone.'):]: v for k, v in release.items() if k.startswith('backbone.')}
    fresh.load_state_dict(get_spec(fresh).adapt_state_dict(backbone), strict=True)

    from mmengine.registry import MODELS
    wrapped = MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=copy.deepcopy(SWIN),
                                pretrained=str(src), pretrained_prefix='backbone.',
                                method=dict(type='LinearProbe')))
    wrapped.eval()
    for key, value in reference.state_dict().items():
        assert torch.equal(wrapped.state_dict()[key], value), key
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(wrapped(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fresh(x), expected, rtol=1e-5, atol=1e-5)

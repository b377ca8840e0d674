"""OpenAI CLIP image tower -> mmpretrain VisionTransformer (pre_norm, QuickGELU).

The reference is timm's own OpenAI CLIP loader (``_convert_openai_clip``) reading a random
OpenAI-layout state dict into a timm CLIP ViT; the mmpretrain backbone built as
``configs/_base_/models/clip-vit-b*.py`` builds it must give the same features.
"""
import copy
import os.path as osp
import subprocess
import sys

import pytest
import torch

timm = pytest.importorskip('timm')
pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from timm.layers import QuickGELU  # noqa: E402
from timm.models.vision_transformer import VisionTransformer as TimmViT  # noqa: E402
from timm.models.vision_transformer import _convert_openai_clip  # noqa: E402

from vpetl_mm.models.converters import is_openai_clip, split_openai_clip  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'vit2mmpretrain.py')
IMG, PATCH, C, DEPTH, HEADS, PROJ = 32, 8, 32, 2, 2, 16
MMPRETRAIN_CLIP = dict(type='VisionTransformer',
                       arch=dict(embed_dims=C, num_layers=DEPTH, num_heads=HEADS,
                                 feedforward_channels=4 * C),
                       img_size=IMG, patch_size=PATCH, pre_norm=True, qkv_bias=True,
                       norm_cfg=dict(type='LN', eps=1e-5),
                       layer_cfgs=dict(act_cfg=dict(type='QuickGELU')),
                       out_type='cls_token', final_norm=True, init_cfg=None)


def openai_state_dict(seed=0):
    """Random weights in the OpenAI CLIP layout (image tower + a stand-in text key)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return 0.1 * torch.randn(*shape, generator=g)
    tokens = (IMG // PATCH)**2 + 1
    sd = {'visual.conv1.weight': r(C, 3, PATCH, PATCH), 'visual.class_embedding': r(C),
          'visual.positional_embedding': r(tokens, C), 'visual.proj': r(C, PROJ),
          'token_embedding.weight': r(10, PROJ), 'logit_scale': torch.tensor(4.6)}
    for name in ('ln_pre', 'ln_post'):
        sd[f'visual.{name}.weight'], sd[f'visual.{name}.bias'] = 1 + r(C), r(C)
    for i in range(DEPTH):
        p = f'visual.transformer.resblocks.{i}.'
        sd.update({p + 'ln_1.weight': 1 + r(C), p + 'ln_1.bias': r(C),
                   p + 'attn.in_proj_weight': r(3 * C, C), p + 'attn.in_proj_bias': r(3 * C),
                   p + 'attn.out_proj.weight': r(C, C), p + 'attn.out_proj.bias': r(C),
                   p + 'ln_2.weight': 1 + r(C), p + 'ln_2.bias': r(C),
                   p + 'mlp.c_fc.weight': r(4 * C, C), p + 'mlp.c_fc.bias': r(4 * C),
                   p + 'mlp.c_proj.weight': r(C, 4 * C), p + 'mlp.c_proj.bias': r(C)})
    return sd


def timm_reference(sd):
    model = TimmViT(img_size=IMG, patch_size=PATCH, embed_dim=C, depth=DEPTH, num_heads=HEADS,
                    num_classes=PROJ, pre_norm=True, act_layer=QuickGELU,
                    norm_layer=torch.nn.LayerNorm, global_pool='token')
    model.load_state_dict(_convert_openai_clip(sd, model))
    return model.eval()


def test_openai_clip_tower_matches_timm():
    sd = openai_state_dict()
    assert is_openai_clip(sd)
    backbone, dropped = split_openai_clip(sd)
    assert set(dropped) == {'visual.proj', 'token_embedding.weight', 'logit_scale'}
    init_default_scope('mmpretrain')
    mm = MODELS.build(copy.deepcopy(MMPRETRAIN_CLIP))
    mm.load_state_dict(backbone, strict=True)
    mm.eval()
    ref = timm_reference(sd)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        expected = ref.forward_head(ref.forward_features(x), pre_logits=True)
        out = mm(x)[-1]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    # and the image projection that was set aside is timm's head
    torch.testing.assert_close(expected @ sd['visual.proj'], ref(x).detach(), rtol=0, atol=1e-5)


def test_tower_alone_and_cli(tmp_path):
    sd = {k[len('visual.'):]: v for k, v in openai_state_dict().items() if k.startswith('visual.')}
    backbone, dropped = split_openai_clip(sd)
    assert set(dropped) == {'proj'} and 'pre_norm.weight' in backbone
    src, dst = tmp_path / 'clip.pth', tmp_path / 'out' / 'clip_mm.pth'
    torch.save(openai_state_dict(), src)
    out = subprocess.run([sys.executable, TOOL, str(src), str(dst)], capture_output=True,
                         text=True, check=True).stdout
    assert 'OpenAI CLIP image tower' in out and 'visual.proj' in out
    saved = torch.load(dst, weights_only=True)['state_dict']
    assert saved.keys() == backbone.keys()
    # a TorchScript archive (the format OpenAI publishes) is read too
    scripted = tmp_path / 'clip_jit.pt'
    torch.jit.save(torch.jit.script(_Holder(openai_state_dict())), str(scripted))
    out = subprocess.run([sys.executable, TOOL, str(scripted), str(dst)], capture_output=True,
                         text=True, check=True).stdout
    assert 'OpenAI CLIP image tower' in out


class _Holder(torch.nn.Module):
    """Parameters under the OpenAI names, nested as modules, so TorchScript keeps the keys."""

    def __init__(self, sd):
        super().__init__()
        for key, value in sd.items():
            *path, leaf = key.split('.')
            module = self
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, torch.nn.Module())
                module = getattr(module, part)
            module.register_parameter(leaf, torch.nn.Parameter(value))

    def forward(self, x):
        return x

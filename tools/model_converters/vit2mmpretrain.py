"""Convert a Google or timm ViT checkpoint to the mmpretrain ``VisionTransformer`` layout.

    python tools/model_converters/vit2mmpretrain.py SRC DST

SRC is either a Google JAX ``.npz`` (e.g. ``ViT-B_16.npz``, ImageNet-21k), a torch file
holding a timm ViT state dict (e.g. ``jx_vit_base_patch16_224_in21k-e5005f0a.pth``), flat or
under ``model`` / ``state_dict``, read with ``weights_only=True``, or an OpenAI CLIP model
(``ViT-B-32.pt`` / ``ViT-B-16.pt``: a TorchScript archive, read with ``torch.jit.load``, so only
convert files you trust; or a plain CLIP state dict), whose image tower is kept. CLIP towers
load into ``VisionTransformer(..., pre_norm=True, norm_cfg=dict(type='LN', eps=1e-5),
layer_cfgs=dict(act_cfg=dict(type='QuickGELU')))`` (``configs/_base_/models/clip-vit-b*.py``).
Safetensors files are not read. DST receives
``{'state_dict': ..., 'meta': {'source': ..., 'converter': ...}}``,
written through a temporary file in DST's folder and a rename, so an interrupted run never
leaves a partial DST. Classifier heads and ``pre_logits`` are left out.

The result loads with ``strict=True`` into ``VisionTransformer(arch=..., qkv_bias=True,
norm_cfg=dict(type='LN', eps=1e-6), final_norm=True)`` (mmpretrain's defaults), e.g. through
``PEFTBackbone(pretrained=DST)``. See ``vpetl_mm/models/converters/vit.py`` for the mapping.

Only torch and numpy are needed: the converter module is loaded from its file, so neither
mmpretrain nor the ``vpetl_mm`` package has to be importable.
"""
import argparse
import os.path as osp
import pickle
import sys

import numpy as np
import torch

try:  # imported as tools.model_converters.vit2mmpretrain
    from ._common import load_converter, save_atomic, unwrap_state_dict
except ImportError:  # run as a script (also through runpy): its folder holds _common.py
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from _common import load_converter, save_atomic, unwrap_state_dict

vit = load_converter('vit')


def load_and_convert(path):
    """Read SRC and return ``(converted state dict, format name, dropped key names)``."""
    if path.endswith('.safetensors'):
        raise ValueError(f'{path}: safetensors files are not supported; save the state dict '
                         'with torch.save first')
    if path.endswith('.npz'):
        with np.load(path) as npz:
            arrays = {key: npz[key] for key in npz.files}
        converted, dropped = vit.split_jax_vit_npz(arrays)
        return converted, 'Google npz', sorted(dropped)
    if _is_torchscript(path):  # OpenAI's released CLIP files are TorchScript archives
        state = torch.jit.load(path, map_location='cpu').state_dict()
    else:
        state = torch.load(path, map_location='cpu', weights_only=True)
    state = unwrap_state_dict(state, path)
    if vit.is_openai_clip(state):
        converted, dropped = vit.split_openai_clip(state)
        text = [k for k in dropped if k not in ('proj', 'visual.proj')]
        notes = [k for k in dropped if k in ('proj', 'visual.proj')]
        if text:
            notes.append(f'{len(text)} text-tower / logit-scale tensors')
        return converted, 'OpenAI CLIP image tower', notes
    converted, dropped = vit.split_timm_vit(state)
    return converted, 'timm state dict', sorted(dropped)


def _is_torchscript(path):
    """Whether ``path`` is a TorchScript archive (a zip holding ``constants.pkl``)."""
    import zipfile
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith('/constants.pkl') for name in archive.namelist())


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a Google JAX .npz, timm ViT or OpenAI CLIP checkpoint to mmpretrain '
                    'VisionTransformer keys (heads dropped).')
    parser.add_argument('src', help='Google ViT .npz, a torch file with a timm ViT state dict, '
                                    'or an OpenAI CLIP model file')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        parser.error(f'no such file: {args.src}')
    try:
        converted, kind, dropped = load_and_convert(args.src)
    except (KeyError, ValueError, pickle.UnpicklingError) as err:
        # str(KeyError) quotes its message; print the plain text
        parser.exit(1, f'vit2mmpretrain: error: {err.args[0] if err.args else err}\n')
    save_atomic({'state_dict': converted,
                 'meta': {'source': osp.basename(args.src), 'converter': 'vit2mmpretrain'}},
                args.dst)
    embed_dims, depth = vit.describe(converted)
    print(f'{args.src} ({kind}): {len(converted)} tensors, embed dims {embed_dims}, '
          f'depth {depth}')
    if dropped:
        print(f'dropped (not part of the backbone): {", ".join(dropped)}')
    print(f'saved {args.dst}')


if __name__ == '__main__':
    main()

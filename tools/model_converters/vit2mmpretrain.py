"""Convert a ViT checkpoint to the mmpretrain ``VisionTransformer`` layout.

    python tools/model_converters/vit2mmpretrain.py SRC DST

SRC is a Google JAX ``.npz`` (e.g. ``ViT-B_16.npz``, ImageNet-21k) or a timm ``.pth``
(``jx_vit_base_patch16_224_in21k-e5005f0a.pth``; a flat state dict or one under ``model`` /
``state_dict``). DST gets ``{'state_dict': ..., 'meta': ...}``, written atomically, ready for
``PEFTBackbone(pretrained=DST)`` with ``VisionTransformer(arch='b', qkv_bias=True,
norm_cfg=dict(type='LN', eps=1e-6))``.
"""
import argparse
import io
import os.path as osp
import sys

import numpy as np
import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from vpetl_mm.compat.fileio import atomic_write_bytes  # noqa: E402
from vpetl_mm.models.converters.vit import (convert_jax_vit_npz,  # noqa: E402
                                            convert_timm_vit, describe)


def load_source(path):
    if path.endswith('.npz'):
        with np.load(path) as npz:
            return convert_jax_vit_npz({k: npz[k] for k in npz.files})
    state = torch.load(path, map_location='cpu', weights_only=True)
    for key in ('model', 'state_dict'):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return convert_timm_vit(state)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='Google .npz or timm .pth')
    parser.add_argument('dst', help='output .pth')
    args = parser.parse_args(argv)
    converted = load_source(args.src)
    buffer = io.BytesIO()
    torch.save({'state_dict': converted,
                'meta': dict(source=osp.basename(args.src), converter='vit2mmpretrain')}, buffer)
    atomic_write_bytes(buffer.getvalue(), args.dst)
    dims, depth = describe(converted)
    print(f'converted {len(converted)} tensors (embed dims {dims}, {depth} blocks) -> {args.dst}')


if __name__ == '__main__':
    main()

"""Convert a Swin Transformer (v1) checkpoint, official or timm, to the OpenMMLab
``SwinTransformer`` layout (mmpretrain, mmseg and mmdet share it).

    python tools/model_converters/swin2mmpretrain.py SRC DST

SRC is a torch file holding a state dict (flat or under ``model`` / ``state_dict``, read with
``weights_only=True``) in one of two layouts: Microsoft's release (e.g.
``swin_base_patch4_window7_224_22k.pth``; timm < 0.9 saved the same) or timm >= 0.9's (a
``timm.create_model('swin_base_patch4_window7_224').state_dict()``: patch merging at the start of
the next stage, ``head.fc``, no index buffers). The detected layout is printed; OpenMMLab-layout
files (need no conversion), HuggingFace transformers' Swin, Swin v2 and unknown layouts are
refused with exit status 1 and the layout named. DST receives
``{'state_dict': ..., 'meta': {'source': ..., 'converter': ...}}``, written through a temporary
file and a rename. The classifier head and the ``attn_mask`` buffers are left out, the
``relative_position_index`` tables are rebuilt from the window size, and the final norm becomes
``norm{last stage}``, so the result loads with ``strict=True`` into
``SwinTransformer(arch=..., window_size=7, out_indices=(3,))`` (four stages), e.g. through
``PEFTBackbone(pretrained=DST)`` (``configs/_base_/models/swin-b_in22k.py``). See
``vpetl_mm/models/converters/swin.py`` for the mapping.

Only torch is needed: the converter module is loaded from its file.
"""
import argparse
import os.path as osp
import pickle
import sys

import torch

try:  # imported as tools.model_converters.swin2mmpretrain
    from ._common import load_converter, save_atomic, unwrap_state_dict
except ImportError:  # run as a script (also through runpy): its folder holds _common.py
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from _common import load_converter, save_atomic, unwrap_state_dict

swin = load_converter('swin')


def load_and_convert(path):
    """Read SRC and return ``(converted state dict, dropped key names, layout name)``."""
    state = torch.load(path, map_location='cpu', weights_only=True)
    state = unwrap_state_dict(state, path)
    try:
        layout = swin.check_swin_layout(state)
    except ValueError as err:
        raise ValueError(f'{path}: {err}') from err
    converted, dropped = swin.split_ms_swin(state)
    return converted, sorted(dropped), layout


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official or timm Swin Transformer (v1) checkpoint to '
                    'OpenMMLab SwinTransformer keys (head dropped).')
    parser.add_argument('src', help='official or timm Swin v1 checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        parser.error(f'no such file: {args.src}')
    try:
        converted, dropped, layout = load_and_convert(args.src)
    except (KeyError, ValueError, pickle.UnpicklingError) as err:
        parser.exit(1, f'swin2mmpretrain: error: {err.args[0] if err.args else err}\n')
    save_atomic({'state_dict': converted,
                 'meta': {'source': osp.basename(args.src), 'converter': 'swin2mmpretrain'}},
                args.dst)
    stages = 1 + max(int(k.split('.')[1]) for k in converted if k.startswith('stages.'))
    width = converted['patch_embed.projection.weight'].shape[0]
    heads = [k for k in dropped if k.startswith('head')]
    indices = sum(k.endswith('relative_position_index') for k in converted)
    print(f'{args.src}: {layout} layout, {len(converted)} tensors, {stages} stages, embed dims '
          f'{width}; left out {len(heads)} head and {len(dropped) - len(heads)} attn_mask '
          f'tensors; rebuilt {indices} relative_position_index tables -> {args.dst}')


if __name__ == '__main__':
    main()

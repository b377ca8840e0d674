"""Convert a VideoMAE checkpoint (self-supervised or fine-tuned) or AdaptFormer's split-qkv form
of it to the mmaction ``VisionTransformer`` layout.

    python tools/model_converters/videomae2mmaction.py SRC DST [--num-frames 16]
        [--img-size 224] [--final-norm {fc_norm,norm}]

SRC is a torch file holding a state dict (flat or under ``model`` / ``module`` / ``state_dict``,
read with ``weights_only=True``) in one of three layouts: MCG-NJU/VideoMAE's pre-trained
checkpoints (e.g. the Kinetics-400 ViT-B pretrain V-PETL uses: ``encoder.*`` plus the decoder),
its fine-tuned classifiers (``blocks.*``, ``fc_norm``, ``head``), or AdaptFormer's form
(``attn.q_proj`` / ``k_proj`` / ``v_proj`` and ``fc1`` / ``fc2``, with or without ``encoder.``).
The detected layout is printed; mmaction-layout files (need no conversion), Video Swin
checkpoints (load as they are, see below), HuggingFace transformers' VideoMAE and unknown layouts
are refused with exit status 1 and the layout named. DST receives
``{'state_dict': ..., 'meta': {'source': ..., 'converter': ..., 'layout': ...,
'use_mean_pooling': ...}}``, written through a temporary file and a rename. The decoder,
``encoder_to_decoder``, ``mask_token`` and the classifier head are left out and listed.

mmaction keeps its sinusoidal ``pos_embed`` as a buffer in the state dict while VideoMAE does not
save it, so DST gets VideoMAE's table for ``--num-frames`` frames at ``--img-size`` pixels (16 and
224, as the released models were trained); a backbone built for fewer frames keeps its own table
when ``PEFTBackbone`` loads DST. ``--final-norm`` says where the source's per-token ``norm`` (the
pretrain's ``encoder.norm``) goes: ``fc_norm`` (default; build the backbone with
``use_mean_pooling=True``, mmaction's default, as ``configs/_base_/models/videomae-vit-b16.py``
does) or ``norm`` (``use_mean_pooling=False``, the encoder's exact per-token output). A source
``fc_norm`` always stays ``fc_norm``. The result loads with ``strict=True`` into
``VisionTransformer(embed_dims=..., depth=..., num_heads=..., patch_size=..., tubelet_size=...,
norm_cfg=dict(type='LN', eps=1e-6), use_mean_pooling=...)``, e.g. through
``PEFTBackbone(pretrained=DST)``. See ``vpetl_mm/models/converters/videomae.py`` for the mapping.

The Video Swin releases (``swin_base_patch244_window877_kinetics400_22k.pth``) need no
converter: ``PEFTBackbone(backbone=dict(type='SwinTransformer3D', ...), pretrained=RELEASE,
pretrained_prefix='backbone.')`` loads them (the 0.x output ``norm`` is renamed on load).

Only torch is needed: the converter module is loaded from its file.
"""
import argparse
import os.path as osp
import pickle
import sys

import torch

try:  # imported as tools.model_converters.videomae2mmaction
    from ._common import load_converter, save_atomic, unwrap_state_dict
except ImportError:  # run as a script (also through runpy): its folder holds _common.py
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from _common import load_converter, save_atomic, unwrap_state_dict

videomae = load_converter('videomae')


def load_and_convert(path, num_frames=16, img_size=224, final_norm='fc_norm'):
    """Read SRC and return ``(converted state dict, dropped key names, layout name, whether
    SRC held a learned pos_embed)``."""
    state = torch.load(path, map_location='cpu', weights_only=True)
    state = unwrap_state_dict(state, path)
    try:
        layout = videomae.check_videomae_layout(state)
        converted, dropped = videomae.split_videomae(state, num_frames, img_size, final_norm)
    except (KeyError, ValueError) as err:
        raise ValueError(f'{path}: {err.args[0] if err.args else err}') from err
    learned = any(k in state for k in ('pos_embed', 'encoder.pos_embed'))
    return converted, sorted(dropped), layout, learned


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a VideoMAE (pre-trained or fine-tuned) or AdaptFormer checkpoint '
                    'to mmaction VisionTransformer keys (decoder and head dropped).')
    parser.add_argument('src', help='VideoMAE / AdaptFormer checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument('--num-frames', type=int, default=16,
                        help='frames the sinusoidal pos_embed is written for (default 16)')
    parser.add_argument('--img-size', type=int, default=224,
                        help='frame size the sinusoidal pos_embed is written for (default 224)')
    parser.add_argument('--final-norm', choices=videomae.FINAL_NORMS, default='fc_norm',
                        help="where the source's per-token norm goes: fc_norm (default, "
                             'use_mean_pooling=True) or norm (use_mean_pooling=False)')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        parser.error(f'no such file: {args.src}')
    try:
        converted, dropped, layout, learned = load_and_convert(
            args.src, args.num_frames, args.img_size, args.final_norm)
    except (KeyError, ValueError, pickle.UnpicklingError) as err:
        parser.exit(1, f'videomae2mmaction: error: {err.args[0] if err.args else err}\n')
    info = videomae.describe(converted)
    save_atomic({'state_dict': converted,
                 'meta': {'source': osp.basename(args.src), 'converter': 'videomae2mmaction',
                          'layout': layout, 'use_mean_pooling': info['use_mean_pooling']}},
                args.dst)
    pooled = 'fc_norm, use_mean_pooling=True' if info['use_mean_pooling'] else \
        'norm, use_mean_pooling=False'
    table = ('learned, kept' if learned else
             f'sinusoid for {args.num_frames} frames at {args.img_size} px')
    left = ', '.join(videomae.summarise_keys(dropped)) or 'nothing'
    print(f'{args.src}: {layout} layout, {len(converted)} tensors, depth {info["depth"]}, embed '
          f'dims {info["embed_dims"]}, tubelet {info["tubelet"]}, patch {info["patch"]}, '
          f'final norm {pooled}, pos_embed {table} ({info["num_tokens"]} tokens); left out {left} '
          f'-> {args.dst}')


if __name__ == '__main__':
    main()

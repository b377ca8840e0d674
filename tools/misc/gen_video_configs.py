"""Write configs/video/{backbone}_{method}_{dataset}.py: V-PETL's video table on MMAction2.

    python tools/misc/gen_video_configs.py [--check]

Every backbone x method x dataset below gets a config with V-PETL's video recipe (8 frames at
stride 4, multi-scale crop, SGD lr 0.1 x batch / 256, 90 epochs; ``vpetl_video_90e.py``);
Video Swin-B on Kinetics-400 also gets MMAction2's own Video Swin recipe
(``video-swin-b_{method}_k400-mmaction.py``: 32 x 2 frames, AdamW, 30 epochs). The tables are
the data; ``--check`` exits 1 when a committed config differs from what they produce (the test
suite runs it).
"""
import os.path as osp
import sys
import textwrap
from typing import Dict, NamedTuple, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OUT = osp.join(ROOT, 'configs', 'video')
sys.path.insert(0, ROOT)
from tools.misc.config_tables import sync_configs  # noqa: E402
from vpetl_mm.engine.runtime import PEFT_HOOKS  # noqa: E402


class Backbone(NamedTuple):
    model: str  # configs/_base_/models/<model>.py
    title: str
    drop_path: str  # the recipe's drop path, for the header


class Dataset(NamedTuple):
    base: str  # configs/_base_/datasets/<base>.py
    title: str
    schedule: str = 'vpetl_video_90e'
    recipe: str = ("V-PETL's video recipe (8 x 4 frames, multi-scale crop, SGD lr 0.1 x batch "
                   '/ 256, 90 epochs, no weight decay)')


class Method(NamedTuple):
    title: str
    vit: object  # the method dict (or list) on the VideoMAE ViT-B, as Python source
    swin: object  # ... on the Video Swin-B
    counts: tuple  # trainable backbone parameters (ViT-B, Video Swin-B), asserted in tests
    note: str = ''  # where V-PETL's published count differs, or how the setting was chosen
    optim: Optional[str] = None  # extra optim_wrapper settings, as Python source


BACKBONES: Dict[str, Backbone] = {
    'videomae-vit-b': Backbone('videomae-vit-b16', 'the VideoMAE ViT-B/16 (Kinetics-400 '
                               'self-supervised pre-training)', 'drop path 0'),
    'video-swin-b': Backbone('video-swin-b', 'Video Swin-B (Kinetics-400, initialised from '
                             'ImageNet-22k)', 'drop path 0.4'),
}

DATASETS: Dict[str, Dataset] = {
    'k400': Dataset('k400_vpetl-8x4x1', 'Kinetics-400'),
    'sthv2': Dataset('sthv2_vpetl-8x4x1', 'Something-Something V2'),
    'hmdb51': Dataset('hmdb51_vpetl-8x4x1', 'HMDB51 split 1'),
}
# MMAction2's Video Swin recipe on Kinetics-400 (configs/recognition/swin/
# swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py), Video Swin-B only
MMACTION_K400 = Dataset(
    'k400_swin-32x2x1', 'Kinetics-400', 'swin_k400_30e',
    "MMAction2's Video Swin recipe (32 x 2 frames, random resized crop + flip, AdamW lr 1e-3 "
    'wd 0.05, 30 epochs; 4 clips x 3 crops at test)')

ADAPTFORMER = "dict(type='AdaptFormer', bottleneck=64, scale=0.1, input_norm=False)"
DYT = ("dict(type='DyT', bottleneck=64, scale=1.0, target_rate=0.5,\n"
       "     rate_weight=2.0, tau=5.0, dropout=0.1)")
METHODS: Dict[str, Method] = {
    'linear': Method('Linear probe (frozen backbone, the head trains)',
                     "dict(type='LinearProbe')", "dict(type='LinearProbe')", (0, 0)),
    'full': Method('Full fine-tuning', "dict(type='FullFineTune')", "dict(type='FullFineTune')",
                   (86227200, 87638984)),
    'adaptformer': Method(
        'AdaptFormer (bottleneck 64, scale 0.1, no LayerNorm, parallel to the MLP)',
        ADAPTFORMER, ADAPTFORMER, (1189632, 1553664),
        'V-PETL reports 1.19M (ViT-B) and 1.55M (Video Swin-B). On Video Swin its code feeds '
        'the adapter norm2(x) inside the MLP drop path; ours reads the post-attention stream '
        'as AdaptFormer does on the ViT.'),
    'prefix': Method(
        'Prefix-tuning (learned key / value tokens from a tanh MLP in every attention layer)',
        "dict(type='PrefixTuning', length=10, bottleneck=64)",
        "dict(type='PrefixTuning', length=10, bottleneck=64)", (1880832, 2456064),
        "V-PETL reports 6.37M on Video Swin-B; its prefix code does not run as shipped and "
        'its flags are not published (at its default 20 tokens only a bottleneck of 169 would '
        "give 6.37M), so the sizes are vpetl_mm's image default (10 tokens, bottleneck 64)."),
    'bapat': Method(
        'BAPAT (AdaptFormer + PATT, composed)',
        "[\n    " + ADAPTFORMER + ",\n    dict(type='PATT', bottleneck=32, scale=0.2, "
        "targets=('k', 'v')),\n]",
        "[\n    " + ADAPTFORMER + ",\n    dict(type='PATT', bottleneck=128, scale=0.2, "
        "targets=('k', 'v')),\n]", (2093184, 6201088),
        'V-PETL reports 2.06M (ViT-B) and 6.18M (Video Swin-B); PATT is 32 wide on the ViT '
        'and 128 on the Swin, the widths those counts imply.'),
    'lora': Method(
        'LoRA (rank 16 on q and v, alpha 16)',
        "dict(type='LoRA', rank=16, alpha=16, targets=('q', 'v'))",
        "dict(type='LoRA', rank=16, alpha=16, targets=('q', 'v'))", (589824, 770048),
        'V-PETL publishes no LoRA code; its ~0.75M on Video Swin-B implies rank 16 on q and v '
        '(770,048 here); the same rank on the ViT.'),
    'bitfit': Method(
        'BitFit (every bias; on Swin also the relative position bias tables)',
        "dict(type='BitFit')", "dict(type='BitFit')", (93696, 1090376),
        'V-PETL reports 1.09M on Video Swin-B: every parameter named *bias*, the relative '
        'position bias tables included.'),
    'adapter': Method(
        'Adapter (bottleneck 64 after the MLP)',
        "dict(type='Adapter', bottleneck=64)", "dict(type='Adapter', bottleneck=64)",
        (1189632, 1553664),
        "The width is V-PETL's adapter default (ffn_num 64); it publishes no video Adapter "
        'count.'),
    'mona': Method(
        'Mona (two multi-cognitive adapters per block, bottleneck 64, per-frame 2-D convs)',
        "dict(type='Mona', bottleneck=64, dropout=0.1)",
        "dict(type='Mona', bottleneck=64, dropout=0.1)", (2684928, 3667456),
        "Mona's home setting (its image configs), its convolutions run on each frame; not in "
        "V-PETL's video table."),
    'dyt': Method(
        'DyT (token dispatcher before the MLP, parallel adapter 64, target rate 0.5)',
        DYT, DYT, (1198860, 1565720),
        "DyT's image defaults; not in V-PETL's video table."),
    'dtl': Method(
        'DTL (rank-2 side maps on the ViT, added back after blocks 6-11; rank 4 on Swin, '
        'side blocks 4-23, added after 14-23)',
        "dict(type='DTL', rank=2, add_blocks=(6, 7, 8, 9, 10, 11))",
        "dict(type='DTL', rank=4, side_blocks=tuple(range(4, 24)),\n"
        "     add_blocks=tuple(range(14, 24)), kernel_size=0)", (36864, 90112),
        "DTL's ViT-B and Swin-B settings (its VTAB scripts); not in V-PETL's video table."),
}

# the hooks every vpetl_mm run needs (the ones tools/train.py adds where a config lacks them)
HOOKS = ('custom_hooks = [\n' + ''.join(f"    dict(type='{hook}'),\n" for hook, _ in PEFT_HOOKS)
         + ']\n')


def config_name(backbone: str, method: str, dataset: str) -> str:
    return f'{backbone}_{method}_{dataset}.py'


def _indent(source: str, spaces: int) -> str:
    return source.replace('\n', '\n' + ' ' * spaces)


def render(backbone: str, method: str, dataset: Dataset) -> str:
    """The text of one config."""
    b, m = BACKBONES[backbone], METHODS[method]
    is_swin = backbone == 'video-swin-b'
    count = m.counts[1] if is_swin else m.counts[0]
    header = (f'{m.title} on {dataset.title} with {b.title} in vpetl_mm.PEFTBackbone: '
              f'{dataset.recipe}, {b.drop_path}.')
    if count is not None:
        header += f' Trainable backbone parameters: {count:,}.'
    lines = textwrap.wrap(header, 98, initial_indent='# ', subsequent_indent='# ')
    if m.note:
        lines += textwrap.wrap(m.note, 98, initial_indent='# ', subsequent_indent='# ')
    lines.append('# Generated by tools/misc/gen_video_configs.py; edit the tables there.')
    method_src = m.swin if is_swin else m.vit
    text = '\n'.join(lines) + f"""
_base_ = [
    'mmaction::_base_/default_runtime.py', '../_base_/models/{b.model}.py',
    '../_base_/datasets/{dataset.base}.py', '../_base_/schedules/{dataset.schedule}.py'
]
custom_imports = dict(imports=['vpetl_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(method={_indent(method_src, 4 if method_src.startswith('[') else 25)}),
    cls_head=dict(num_classes=_base_.num_classes))
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=2,
                                     backend_args=dict(backend='vpetl_atomic')))
{HOOKS}"""
    if method == 'full' and dataset is MMACTION_K400:
        text += ("# MMAction2's recipe trains the pretrained backbone at a tenth of the lr\n"
                 "optim_wrapper = dict(paramwise_cfg=dict(backbone=dict(lr_mult=0.1)))\n")
    return text


def all_configs() -> Dict[str, str]:
    """``file name -> text`` of every config the tables describe."""
    out = {}
    for backbone in BACKBONES:
        for method in METHODS:
            for key, dataset in DATASETS.items():
                out[config_name(backbone, method, key)] = render(backbone, method, dataset)
            if backbone == 'video-swin-b':
                out[config_name(backbone, method, 'k400-mmaction')] = render(
                    backbone, method, MMACTION_K400)
    return out


def main(argv=None) -> int:
    return sync_configs(all_configs(), OUT, __doc__.split('\n')[0], argv)


if __name__ == '__main__':
    sys.exit(main())

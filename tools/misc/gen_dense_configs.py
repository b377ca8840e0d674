"""Write configs/dense/*.py: V-PETL's dense table (COCO, Pascal VOC, ADE20K) as its authors ran it.

    python tools/misc/gen_dense_configs.py [--check]

V-PETL's dense numbers come from the Mona repository's configs (Leiyi-Hu/mona): Cascade Mask
R-CNN + Swin-B on COCO, RetinaNet + Swin-L on Pascal VOC 07+12, UperNet + Swin-L on ADE20K. Each
recipe lives in ``configs/_base_/dense/``; every method below gets one config per recipe that sets
the method (and, on ADE20K, what the authors' run of that method changed). The tables are the
data; ``--check`` exits 1 when a committed config differs from what they produce (the test suite
runs it).
"""
import os.path as osp
import sys
import textwrap
from typing import Dict, NamedTuple, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OUT = osp.join(ROOT, 'configs', 'dense')
sys.path.insert(0, ROOT)
from tools.misc.config_tables import sync_configs  # noqa: E402


class Recipe(NamedTuple):
    base: str  # configs/_base_/dense/<base>.py
    name: str  # the config file name, with {method}
    title: str
    arch: str  # 'Swin-B' or 'Swin-L': the column of V-PETL's table
    summary: str  # the recipe in a line, for the header (the base file has the details)


class AdeSetting(NamedTuple):
    """What the authors' ADE20K run of a method set on top of mmseg's Swin recipe."""
    lr: str  # AdamW lr, as Python source
    drop_path: float
    head_norm: str  # 'SyncBN' or 'BN' in the decode and auxiliary heads
    source: str  # where the setting comes from, for the header ({name}: the method's name)


class Method(NamedTuple):
    name: str  # as the authors' tables name it
    title: str
    method: str  # the method dict, as Python source
    counts: Dict[str, int]  # recipe -> trainable backbone parameters, asserted in tests
    vpetl: Tuple[str, str]  # V-PETL's printed counts in M (Swin-B, Swin-L)
    ade: AdeSetting
    note: str = ''  # why our count differs from V-PETL's (required where it does)
    about: str = ''  # how the setting was chosen, where it departs from the authors' code


RECIPES: Dict[str, Recipe] = {
    'coco': Recipe(
        'cascade-mask-rcnn_swin-b-p4-w7_fpn_ms-crop-3x_coco',
        'cascade-mask-rcnn_swin-b-p4-w7_{method}_fpn_ms-crop-3x_coco.py',
        'COCO instance segmentation', 'Swin-B',
        'Cascade Mask R-CNN + FPN with the authors\' SyncBN / GIoU box heads, 3x (36 epochs, '
        'DETR-style multi-scale crop), AdamW lr 1e-4, weight decay 0.05, drop path 0.3'),
    'voc': Recipe(
        'retinanet_swin-l-p4-w7_fpn_1x_voc0712',
        'retinanet_swin-l-p4-w7_{method}_fpn_1x_voc0712.py',
        'Pascal VOC 07+12 detection', 'Swin-L',
        'RetinaNet + FPN on stages 1-3, 4 epochs of VOC 07+12 x 3 (lr x 0.1 after 3, no '
        'warm-up), 2 images per iteration, AdamW lr 1e-4, weight decay 0.05, drop path 0.2, '
        '11-point mAP on VOC 2007 test'),
    'ade': Recipe(
        'upernet_swin-l-p4-w7_8xb2-160k_ade20k-512x512',
        'upernet_swin-l-p4-w7_{method}_8xb2-160k_ade20k-512x512.py',
        'ADE20K semantic segmentation', 'Swin-L',
        'UperNet, 512 x 512 crops, 8 x 2 images, 160k iterations (1,500 warm-up, poly), AdamW '
        'weight decay 0.01'),
}

# the recipe base holds mmseg's own setting, which the authors' Full and Fixed runs keep
ADE_ZOO = AdeSetting('6e-5', 0.3, 'SyncBN', "mmseg's setting, as the authors' {name} run")
ADE_BN = AdeSetting('6e-5', 0.3, 'BN',
                    "the authors' {name} run: mmseg's setting with BN, not SyncBN, in the heads")
ADE_MONA = AdeSetting('3e-4', 0.2, 'SyncBN',
                      "the authors' Mona run: mmseg's lr 6e-5 x 5, drop path 0.2 for its 0.3")
ADE_MONA_LIKE = AdeSetting(
    '3e-4', 0.2, 'SyncBN',
    "Mona's setting: {name} publishes no ADE20K config, and Mona is its authors' later method")

METHODS: Dict[str, Method] = {
    'full': Method(
        'Full', 'Full fine-tuning (every backbone weight trains)', "dict(type='FullFineTune')",
        dict(coco=86745016, voc=194997780, ade=194998164), ('86.75', '198.58'), ADE_ZOO,
        note='The whole Swin-L is 195.00M here (with its three or four output norms); no part '
             'of it, nor a 1k-class head (1.54M), makes up the other 3.58M.'),
    'linear': Method(
        'Fixed', "Frozen backbone, only the neck and heads train (V-PETL's Frozen, the "
        "authors' fixed)", "dict(type='LinearProbe')", dict(coco=0, voc=0, ade=0),
        ('0.00', '0.00'), ADE_ZOO),
    'bitfit': Method(
        'BitFit', 'BitFit (every parameter named *bias*, the relative position bias tables '
        'included, as the authors select them)', "dict(type='BitFit')",
        dict(coco=201656, voc=302292, ade=302484), ('0.20', '0.30'), ADE_BN),
    'lntune': Method(
        'LN-tune', 'LN-tune (every LayerNorm weight and bias: blocks, patch embedding, patch '
        'merging and output norms, the authors\' names containing "norm")',
        "dict(type='LNTune')", dict(coco=59392, voc=88704, ade=89088), ('0.06', '0.09'),
        ADE_BN),
    'partial-1': Method(
        'Partial-1', "Partial-1 (the last block: stages.3.blocks.1, the authors' "
        'layers.3.blocks.1)', "dict(type='PartialK', k=1)",
        dict(coco=12601632, voc=28339632, ade=28339632), ('12.60', '28.34'), ADE_BN),
    'adapter': Method(
        'Adapter', 'Adapter (two per block, bottleneck 64, GELU, dropout 0.1: on the stream '
        'after the attention residual and on the MLP output)',
        "dict(type='Adapter', bottleneck=64, dropout=0.1, attn_residual=True)",
        dict(coco=3107328, voc=4659456, ade=4659456), ('3.11', '4.66'), ADE_BN,
        about="The authors' adapters keep nn.Linear's default init (a non-zero output at the "
              'start); here the up projection starts at zero, so training starts from the '
              'pretrained function.'),
    'lora': Method(
        'LoRA', "LoRA (rank 64 on q and v, alpha 1: scale 1/64, as the authors' MergedLinear)",
        "dict(type='LoRA', rank=64, alpha=1, targets=('q', 'v'))",
        dict(coco=3080192, voc=4620288, ade=4620288), ('3.03', '4.57'), ADE_BN,
        note="The authors' LoRA (256 x C per block: A 2r x C, B 2C x r) gives 3,080,192 on "
             'Swin-B and 4,620,288 on Swin-L, as here; the printed counts are 50k lower on '
             'both, which no setting of it explains.'),
    'adaptformer': Method(
        'AdaptFormer', 'AdaptFormer (one bottleneck 64 per block parallel to the MLP, reading '
        'the post-attention stream, scale 0.1, dropout 0.1)',
        "dict(type='AdaptFormer', bottleneck=64, scale=0.1, dropout=0.1, input_norm=False)",
        dict(coco=1553664, voc=2329728, ade=2329728), ('3.11', '4.66'), ADE_BN,
        note="Those are the Adapter's counts; the authors' AdaptFormer has one module per "
             'block, half the two adapters.',
        about="The authors' variant uses GELU and nn.Linear's default init; this keeps "
              "AdaptFormer's own ReLU and zero-initialised up projection."),
    'lorand': Method(
        'LoRand', 'LoRand (two adapters per block, each projection synthesised from 2 branches '
        'of 8 x 8 kernels, bottleneck C / 2)',
        "dict(type='LoRand', branches=2, kernel=8, factor=2)",
        dict(coco=1203456, voc=1799040, ade=1799040), ('1.20', '1.31'), ADE_MONA_LIKE,
        note="No LoRand setting gives 1.31M on Swin-L; the one that gives V-PETL's 1.20M on "
             "Swin-B gives 1,799,040 there (V-PETL's E3VA 1.79M).",
        about='LoRand publishes no dense configs (DongshuoYin/CoLin holds its Swin backbone); '
              'the setting is the one V-PETL counts on Swin-B.'),
    'e3va': Method(
        'E3VA', 'E3VA (an adapter highway beside the frozen Swin, no backpropagation through '
        'it; LoRand-shaped adapters, 2 branches, kernel 8, bottleneck C / 2; the output norms '
        'train)', "dict(type='E3VA', branches=2, kernel=8, factor=2)",
        dict(coco=1207296, voc=1804416, ade=1804800), ('1.20', '1.79'), ADE_MONA_LIKE,
        note='That is the adapters alone: 1,203,456 on Swin-B, 1,799,040 on Swin-L (printed '
             'truncated); E3VA also trains the output LayerNorms that read the highway '
             '(3,840 on Swin-B; 5,376 / 5,760 on Swin-L with three / four outputs).',
        about='E3VA publishes no code; vpetl_mm/peft/e3va.py names the choices made here.'),
    'mona': Method(
        'Mona', 'Mona (two multi-cognitive adapters per block, bottleneck 64, dropout 0.1)',
        "dict(type='Mona', bottleneck=64, dropout=0.1)",
        dict(coco=3667456, voc=5267712, ade=5267712), ('4.16', '5.08'), ADE_MONA,
        note="The authors' Mona code (two adapters of 133 x C + 9,728 per block) gives "
             '3,667,456 on Swin-B and 5,267,712 on Swin-L, as here.'),
}

def config_name(recipe: str, method: str) -> str:
    return RECIPES[recipe].name.format(method=method)


def vpetl_count(recipe: str, method: str) -> str:
    """V-PETL's printed count (M) for the recipe's Swin."""
    return METHODS[method].vpetl[0 if RECIPES[recipe].arch == 'Swin-B' else 1]


def ade_setting(method: str) -> AdeSetting:
    """The method's ADE20K setting, its source written out."""
    m = METHODS[method]
    return m.ade._replace(source=m.ade.source.format(name=m.name))


def header(recipe: str, method: str) -> str:
    """The comment lines that open a config: recipe, method, count, V-PETL's count and why."""
    r, m = RECIPES[recipe], METHODS[method]
    count = m.counts[recipe]
    summary = r.summary
    if recipe == 'ade':
        s = ade_setting(method)
        summary += (f', lr {s.lr}, drop path {s.drop_path}, {s.head_norm} in the heads '
                    f'({s.source})')
    paragraphs = [f'{m.title} on {r.title} with {r.arch} (ImageNet-22k) in '
                  f'vpetl_mm.PEFTBackbone: {summary}. Trainable backbone parameters: {count:,}.']
    printed = vpetl_count(recipe, method)
    if f'{count / 1e6:.2f}' != printed:
        if not m.note:
            raise ValueError(f'{method} on {recipe}: {count:,} against V-PETL\'s {printed}M '
                             'needs a note saying why')
        paragraphs.append(f'V-PETL reports {printed}M for {r.arch}. {m.note}')
    if m.about:
        paragraphs.append(m.about)
    lines = []
    for text in paragraphs:
        lines += textwrap.wrap(text, 98, initial_indent='# ', subsequent_indent='# ')
    lines.append('# Generated by tools/misc/gen_dense_configs.py; edit the tables there.')
    return '\n'.join(lines) + '\n'


def model_source(recipe: str, method: str) -> str:
    """``model = dict(...)`` and, on ADE20K, ``optim_wrapper``: what this config changes in the
    recipe base."""
    method_src = METHODS[method].method
    if recipe != 'ade':
        return f'model = dict(\n    backbone=dict(\n        method={method_src}))\n'
    s, zoo = ade_setting(method), ADE_ZOO
    backbone = f'method={method_src}'
    if s.drop_path != zoo.drop_path:
        backbone = f'backbone=dict(drop_path_rate={s.drop_path}),\n        ' + backbone
    parts = [f'    backbone=dict(\n        {backbone})']
    if s.head_norm != zoo.head_norm:
        norm = f"norm_cfg=dict(type='{s.head_norm}', requires_grad=True)"
        parts += [f'    decode_head=dict({norm})', f'    auxiliary_head=dict({norm})']
    text = 'model = dict(\n' + ',\n'.join(parts) + ')\n'
    if s.lr != zoo.lr:
        text += f'optim_wrapper = dict(optimizer=dict(lr={s.lr}))\n'
    return text


def render(recipe: str, method: str) -> str:
    """The text of one config."""
    return (header(recipe, method)
            + f"_base_ = ['../_base_/dense/{RECIPES[recipe].base}.py']\n"
            + model_source(recipe, method))


def all_configs() -> Dict[str, str]:
    """``file name -> text`` of every config the tables describe."""
    return {config_name(recipe, method): render(recipe, method)
            for recipe in RECIPES for method in METHODS}


def main(argv=None) -> int:
    return sync_configs(all_configs(), OUT, __doc__.split('\n')[0], argv)


if __name__ == '__main__':
    sys.exit(main())

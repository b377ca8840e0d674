"""Write configs/vtab/vit-b_{method}_{dataset}.py for the 19 VTAB-1K datasets.

    python tools/misc/gen_vtab_configs.py [--check]

The per-dataset hyperparameters below are the published ones; each table names its source. The
generated files are committed; re-run this after editing a table. ``--check`` exits 1 when a
committed config differs from what the tables produce (the test suite runs it).
"""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
from tools.misc.config_tables import sync_configs  # noqa: E402
from vpetl_mm.datasets.vtab import VTAB_DATASETS  # noqa: E402
OUT = osp.join(ROOT, 'configs', 'vtab')

# dataset -> (label smoothing, train_aug): V-PETL Bench configs/model_*/vtab/*.yaml
# (folder names and class counts: vpetl_mm.datasets.VTAB_DATASETS)
DATASETS = {
    'cifar100': (0.1, False), 'caltech101': (0.1, False), 'dtd': (0.1, True),
    'oxford_flowers102': (0.1, True), 'oxford_iiit_pet': (0.1, True), 'svhn': (0.1, True),
    'sun397': (0.1, True), 'patch_camelyon': (0.1, True), 'eurosat': (0.1, True),
    'resisc45': (0.1, True), 'diabetic_retinopathy': (0.1, True), 'clevr_count': (0.0, True),
    'clevr_dist': (0.0, False), 'dmlab': (0.0, True), 'kitti': (0.1, True),
    'dsprites_loc': (0.0, False), 'dsprites_ori': (0.0, False), 'smallnorb_azi': (0.0, False),
    'smallnorb_ele': (0.0, False),
}

# (lr, weight decay): V-PETL Bench scripts/run_vit_adapter.sh (shared by most methods)
ADAPTER = {
    'cifar100': (0.01, 1.0), 'caltech101': (0.006, 0.35), 'dtd': (0.0032, 0.04),
    'oxford_flowers102': (0.05, 0.11), 'oxford_iiit_pet': (0.0007, 0.8), 'svhn': (0.001, 0.005),
    'sun397': (0.0017, 0.01), 'patch_camelyon': (0.0072, 0.002), 'eurosat': (0.06, 0.001),
    'resisc45': (0.01, 0.01), 'diabetic_retinopathy': (0.004, 0.0003),
    'clevr_count': (0.0033, 0.01), 'clevr_dist': (0.0018, 0.005), 'dmlab': (0.009, 0.1),
    'kitti': (0.0072, 0.0001), 'dsprites_loc': (0.003, 0.001), 'dsprites_ori': (0.01, 0.05),
    'smallnorb_azi': (0.0062, 0.005), 'smallnorb_ele': (0.0011, 0.0005),
}
# V-PETL Bench scripts/run_vit_{lora,fclayer}.sh: the Adapter values except these rows
LORA = dict(ADAPTER, cifar100=(0.005, 0.005))
LINEAR = dict(ADAPTER, cifar100=(1e-3, 1e-4), caltech101=(0.006, 0.35))
# V-PETL Bench scripts/run_vit_{bitfit,lntune}.sh: the Adapter values except these rows
BITFIT = dict(ADAPTER, cifar100=(3e-3, 1e-4), caltech101=(0.006, 0.25))
LNTUNE = dict(ADAPTER, cifar100=(0.008, 0.01), caltech101=(0.005, 0.01))
# V-PETL Bench scripts/run_vit_fulltuning.sh publishes cifar100, caltech101 and dtd only; the
# other datasets use the cifar100 values (no per-dataset value is published).
FULL = {name: (5e-4, 0.1) for name in DATASETS}
FULL.update(caltech101=(5e-4, 5e-3), dtd=(1e-4, 5e-2))

# (lr, drop_path) for DTL and (lr, drop_path, kernel) for DTL+:
# heekhero/DTL train_scripts/vit/vtab/<dataset>/train_dtl(+).sh
DTL = {
    'cifar100': ((3e-4, 0.1), (5e-4, 0.1, 3)), 'caltech101': ((1e-3, 0.0), (5e-4, 0.0, 3)),
    'dtd': ((3e-4, 0.1), (3e-4, 0.1, 5)), 'oxford_flowers102': ((8e-3, 0.2), (8e-3, 0.2, 5)),
    'oxford_iiit_pet': ((3e-4, 0.1), (3e-4, 0.0, 3)), 'svhn': ((8e-3, 0.2), (5e-3, 0.2, 5)),
    'sun397': ((5e-4, 0.1), (3e-3, 0.0, 5)), 'patch_camelyon': ((8e-3, 0.1), (3e-3, 0.0, 4)),
    'eurosat': ((8e-3, 0.0), (3e-3, 0.1, 3)), 'resisc45': ((8e-3, 0.1), (1e-2, 0.1, 3)),
    'diabetic_retinopathy': ((1e-4, 0.1), (1e-4, 0.1, 5)),
    'clevr_count': ((1e-3, 0.2), (8e-4, 0.2, 5)), 'clevr_dist': ((5e-4, 0.2), (1e-3, 0.2, 4)),
    'dmlab': ((8e-4, 0.2), (5e-3, 0.2, 3)), 'kitti': ((8e-3, 0.1), (8e-3, 0.2, 4)),
    'dsprites_loc': ((1e-2, 0.0), (8e-3, 0.1, 4)), 'dsprites_ori': ((8e-3, 0.0), (8e-4, 0.2, 5)),
    'smallnorb_azi': ((3e-3, 0.2), (3e-3, 0.2, 5)), 'smallnorb_ele': ((1e-3, 0.2), (1e-3, 0.1, 5)),
}

# Swin-B: {dataset: ((DTL lr, drop path), (DTL+ lr, drop path, kernel))}, heekhero/DTL
# train_scripts/swin/vtab/<dataset>/train_dtl(+).sh (r 4, side maps before blocks 4-23, add-back
# after blocks 14-23)
DTL_SWIN = {
    'cifar100': ((1e-3, 0.1), (3e-3, 0.0, 5)), 'caltech101': ((1e-3, 0.4), (5e-4, 0.4, 5)),
    'dtd': ((1e-4, 0.4), (8e-4, 0.1, 5)), 'oxford_flowers102': ((1e-3, 0.1), (5e-3, 0.1, 5)),
    'oxford_iiit_pet': ((3e-4, 0.1), (1e-4, 0.3, 5)), 'svhn': ((3e-3, 0.4), (5e-3, 0.5, 5)),
    'sun397': ((8e-4, 0.2), (3e-3, 0.1, 5)), 'patch_camelyon': ((3e-3, 0.0), (5e-3, 0.0, 5)),
    'eurosat': ((8e-4, 0.4), (1e-3, 0.3, 5)), 'resisc45': ((5e-3, 0.5), (3e-3, 0.5, 5)),
    'diabetic_retinopathy': ((1e-4, 0.5), (3e-4, 0.5, 5)),
    'clevr_count': ((5e-4, 0.4), (5e-4, 0.5, 5)), 'clevr_dist': ((3e-4, 0.5), (5e-4, 0.5, 5)),
    'dmlab': ((3e-3, 0.3), (3e-3, 0.4, 5)), 'kitti': ((1e-3, 0.5), (5e-3, 0.5, 5)),
    'dsprites_loc': ((8e-3, 0.4), (1e-2, 0.5, 5)), 'dsprites_ori': ((5e-4, 0.3), (8e-4, 0.5, 5)),
    'smallnorb_azi': ((3e-3, 0.5), (3e-3, 0.5, 5)), 'smallnorb_ele': ((8e-4, 0.5), (1e-3, 0.5, 5)),
}

# (lr, weight decay, drop path): SSF train_scripts/vit/vtab/main_script/main_ssf.sh (as kept in
# V-PETL Bench's history, @5cacd8f^)
SSF = {
    'caltech101': (1e-3, 5e-2, 0.1), 'cifar100': (5e-3, 5e-5, 0.0), 'dtd': (5e-3, 5e-5, 0.0),
    'oxford_flowers102': (5e-3, 5e-5, 0.0), 'oxford_iiit_pet': (5e-3, 5e-5, 0.0),
    'svhn': (1e-2, 5e-5, 0.0), 'sun397': (5e-3, 5e-5, 0.0), 'patch_camelyon': (5e-3, 5e-5, 0.0),
    'eurosat': (3e-3, 5e-2, 0.2), 'resisc45': (2e-3, 5e-5, 0.1),
    'diabetic_retinopathy': (5e-3, 5e-5, 0.2), 'clevr_count': (2e-3, 5e-2, 0.1),
    'clevr_dist': (5e-2, 5e-2, 0.1), 'dmlab': (5e-3, 5e-5, 0.1), 'kitti': (1e-2, 5e-5, 0.0),
    'dsprites_loc': (1e-2, 5e-5, 0.0), 'dsprites_ori': (5e-3, 5e-5, 0.2),
    'smallnorb_azi': (2e-2, 5e-5, 0.1), 'smallnorb_ele': (5e-3, 5e-2, 0.2),
}

# scale per dataset: luogen1996/RepAdapter configs/repblock/*.yaml (lr 1e-3, wd 1e-4 for all)
REPADAPTER_SCALE = {
    'cifar100': 0.1, 'caltech101': 5, 'dtd': 1, 'oxford_flowers102': 0.5, 'oxford_iiit_pet': 0.1,
    'svhn': 10, 'sun397': 0.1, 'patch_camelyon': 1, 'eurosat': 1, 'resisc45': 5,
    'diabetic_retinopathy': 0.1, 'clevr_count': 0.5, 'clevr_dist': 0.1, 'dmlab': 5, 'kitti': 5,
    'dsprites_loc': 5, 'dsprites_ori': 0.1, 'smallnorb_azi': 10, 'smallnorb_ele': 1,
}
REPADAPTER = {name: (1e-3, 1e-4) for name in REPADAPTER_SCALE}

# (lr, wd, scale, dropout, batch): extremebird/Hydra vtab1k/configs/hydra_both/<dataset>.yaml
HYDRA_TABLE = {
    'cifar100': (5e-4, 1e-4, 0.1, 0.2, 16), 'caltech101': (1e-3, 1e-4, 4, 0.1, 32),
    'dtd': (1e-3, 1e-4, 0.1, 0.2, 32), 'oxford_flowers102': (5e-3, 1e-4, 0.1, 0.0, 64),
    'oxford_iiit_pet': (1e-3, 1e-4, 0.1, 0.0, 32), 'svhn': (1e-3, 1e-4, 3, 0.0, 16),
    'sun397': (1e-3, 1e-4, 0.1, 0.2, 64), 'patch_camelyon': (5e-3, 1e-4, 0.1, 0.2, 64),
    'eurosat': (5e-4, 1e-4, 0.1, 0.2, 64), 'resisc45': (5e-3, 1e-4, 0.1, 0.2, 64),
    'diabetic_retinopathy': (5e-4, 1e-4, 4.5, 0.2, 64), 'clevr_count': (5e-4, 1e-4, 1.5, 0.2, 64),
    'clevr_dist': (5e-4, 1e-4, 0.1, 0.0, 16), 'dmlab': (1e-3, 1e-4, 4.5, 0.2, 64),
    'kitti': (5e-4, 1e-4, 4.5, 0.2, 64), 'dsprites_loc': (1e-3, 1e-4, 4.5, 0.2, 16),
    'dsprites_ori': (1e-3, 1e-4, 2.5, 0.2, 64), 'smallnorb_azi': (5e-3, 1e-5, 3, 0.2, 64),
    'smallnorb_ele': (5e-4, 1e-4, 1, 0.2, 64),
}
HYDRA = {name: row[:2] for name, row in HYDRA_TABLE.items()}

# (TT rank, TT scale, TK rank, TK scale): JieShibo/PETL-ViT FacT/configs/{tt,tk}/<dataset>.yaml
# (lr 1e-3, wd 1e-4 for all)
FACT_TABLE = {
    'cifar100': (8, 1.0, 32, 0.1), 'caltech101': (16, 10, 32, 10), 'dtd': (8, 0.01, 16, 0.01),
    'oxford_flowers102': (16, 1, 32, 1), 'oxford_iiit_pet': (8, 1, 16, 10),
    'svhn': (16, 100, 32, 100), 'sun397': (8, 1, 16, 1), 'patch_camelyon': (8, 10, 32, 10),
    'eurosat': (8, 100, 32, 100), 'resisc45': (8, 0.1, 32, 10),
    'diabetic_retinopathy': (8, 1, 16, 1), 'clevr_count': (16, 1, 32, 10),
    'clevr_dist': (4, 10, 16, 10), 'dmlab': (16, 10, 32, 10), 'kitti': (16, 10, 32, 10),
    'dsprites_loc': (16, 100, 32, 100), 'dsprites_ori': (16, 1, 32, 1),
    'smallnorb_azi': (16, 100, 32, 100), 'smallnorb_ele': (8, 10, 16, 10),
}
FACT = {name: (1e-3, 1e-4) for name in FACT_TABLE}

# (lr, weight decay): zhaohengyuan1/SCT run_model_sct.sh; the datasets trained with augmentation
# in its configs/model_sct/vtab/*.yaml (label smoothing as in DATASETS)
SCT = dict(ADAPTER, cifar100=(0.013, 1.0), svhn=(0.075, 0.03))
SCT_AUG = ('dtd', 'oxford_iiit_pet', 'svhn', 'patch_camelyon', 'eurosat', 'resisc45',
           'diabetic_retinopathy', 'kitti', 'clevr_count', 'clevr_dist', 'dmlab')

# (batch, lr): FightingFighting/GPS train_scripts/vit/vtab/<dataset>/train_gps.sh (connections 2
# on patch_camelyon, 1 elsewhere; Adam, weight decay 0, no augmentation)
GPS = {
    'cifar100': (32, 1e-2), 'caltech101': (16, 2e-3), 'dtd': (16, 2e-3),
    'oxford_flowers102': (16, 2e-3), 'oxford_iiit_pet': (32, 3e-3), 'svhn': (32, 5e-3),
    'sun397': (16, 2.5e-3), 'patch_camelyon': (32, 4e-3), 'eurosat': (16, 2e-3),
    'resisc45': (16, 1.5e-3), 'diabetic_retinopathy': (32, 2e-3), 'clevr_count': (16, 3e-4),
    'clevr_dist': (16, 2e-3), 'dmlab': (16, 1.5e-3), 'kitti': (16, 1e-3),
    'dsprites_loc': (32, 7e-3), 'dsprites_ori': (16, 5e-4), 'smallnorb_azi': (32, 3e-3),
    'smallnorb_ele': (32, 3e-4),
}

# NOAH's searched VTAB-1K subnets, per block 0..11: (VPT-deep tokens, LoRA rank, Adapter dim),
# ZhangYuanhan-AI/NOAH experiments/NOAH/subnet/VTAB/ViT-B_prompt_<dataset>.yaml (RETRAIN)
NOAH = {
    'cifar100': ('10,5,10,1,5,1,10,1,10,5,1,10', '10,1,5,5,1,10,1,1,1,10,1,1',
                 '5,10,10,10,5,1,1,1,10,10,10,1'),
    'caltech101': ('5,10,1,5,10,1,10,1,10,1,10,1', '1,10,10,10,5,10,10,10,5,1,10,1',
                   '10,1,5,10,10,1,5,5,10,1,5,10'),
    'dtd': ('10,5,1,1,5,10,5,1,1,5,1,1', '10,5,1,1,5,10,5,1,1,5,1,1',
            '1,1,1,10,1,1,10,10,10,10,10,1'),
    'oxford_flowers102': ('10,10,5,5,1,10,1,5,10,1,5,10', '10,10,5,5,1,10,1,5,10,1,5,10',
                          '5,1,5,5,1,1,10,5,5,10,5,10'),
    'oxford_iiit_pet': ('10,5,5,10,1,10,10,10,10,5,10,10', '10,1,1,10,5,1,1,5,10,10,1,10',
                        '1,5,5,5,5,10,1,5,10,1,1,5'),
    'svhn': ('10,5,5,10,5,5,5,5,5,5,5,5', '5,5,5,10,5,5,5,10,10,10,10,5',
             '5,5,5,5,5,10,5,10,5,5,5,5'),
    'sun397': ('5,1,10,5,5,10,1,5,1,1,1,1', '10,10,5,5,1,1,10,1,1,1,1,10',
               '10,5,1,1,1,10,5,5,1,1,5,1'),
    'patch_camelyon': ('10,10,5,10,1,10,10,10,5,1,5,5', '10,10,1,10,1,1,5,5,5,1,5,5',
                       '5,1,10,5,5,1,1,10,1,5,1,5'),
    'eurosat': ('10,10,10,10,10,1,5,5,10,10,5,10', '10,1,10,10,1,5,10,1,1,1,10,1',
                '10,10,5,1,10,1,10,5,10,1,10,10'),
    'resisc45': ('5,5,10,1,5,1,5,10,1,1,5,1', '10,10,5,5,5,10,10,10,1,5,1,5',
                 '5,5,5,1,5,1,10,5,5,1,5,5'),
    'diabetic_retinopathy': ('10,1,5,10,1,5,5,10,5,10,5,5', '1,1,10,5,5,10,1,10,10,5,10,1',
                             '1,1,5,5,10,10,10,5,1,10,10,1'),
    'clevr_count': ('10,1,5,10,5,1,10,5,5,5,10,1', '1,1,10,5,10,10,10,1,5,1,10,1',
                    '1,10,10,10,10,1,5,10,10,10,1,1'),
    'clevr_dist': ('10,1,1,10,5,10,5,1,5,10,5,5', '5,1,10,5,10,10,1,1,5,10,1,10',
                   '1,1,1,10,1,1,1,10,5,1,10,10'),
    'dmlab': ('1,10,5,1,10,10,5,10,10,1,1,1', '10,5,1,5,10,10,5,5,5,10,10,1',
              '5,1,5,1,5,1,5,5,5,10,10,10'),
    'kitti': ('1,5,10,1,10,5,1,1,1,5,5,5', '5,10,10,10,1,10,5,5,10,5,10,1',
              '5,1,10,10,1,10,1,1,5,10,5,5'),
    'dsprites_loc': ('5,10,1,10,10,5,5,1,5,5,10,1', '1,1,1,1,10,10,1,10,5,1,5,10',
                     '1,1,1,10,1,1,10,10,10,10,10,1'),
    'dsprites_ori': ('5,5,1,1,10,5,1,10,10,10,10,10', '1,10,1,10,1,5,10,10,5,5,1,5',
                     '1,10,10,10,10,1,5,10,10,10,1,1'),
    'smallnorb_azi': ('1,10,1,10,1,5,10,10,1,10,10,5', '10,5,1,5,1,1,5,5,10,1,1,10',
                      '5,1,1,1,5,5,1,10,1,1,5,1'),
    'smallnorb_ele': ('10,1,1,1,1,5,10,10,10,10,1,10', '10,1,1,1,5,5,10,5,1,10,1,1',
                      '1,1,1,10,1,1,10,10,10,10,10,1'),
}


def noah_methods(dataset):
    """The method list of NOAH's subnet for ``dataset``: VPT-deep with one length per block,
    then one LoRA (fused qkv, no scaling, dropout 0.1) and one Adapter per distinct size with
    the blocks that use it."""
    prompts, ranks, dims = ([int(v) for v in row.split(',')] for row in NOAH[dataset])
    items = [f"dict(type='VPT-deep', length={prompts}, dropout=0.1)"]
    for r in sorted(set(ranks)):
        blocks = [i for i, v in enumerate(ranks) if v == r]
        items.append(f"dict(type='LoRA', targets=('qkv', ), rank={r}, alpha={r}, dropout=0.1, "
                     f"blocks={blocks})")
    for d in sorted(set(dims)):
        blocks = [i for i, v in enumerate(dims) if v == d]
        items.append(f"dict(type='Adapter', bottleneck={d}, blocks={blocks})")
    return '[\n        ' + ',\n        '.join(items) + ',\n    ]'


# (lr, weight decay, side drop path): AFeng-x/HST train_scripts/vit/vtab/<dataset>/train_s4.sh
HST = {
    'cifar100': (1e-2, 5e-4, 0.0), 'caltech101': (1e-3, 5e-4, 0.1), 'dtd': (1e-2, 5e-4, 0.0),
    'oxford_flowers102': (1e-3, 5e-5, 0.0), 'oxford_iiit_pet': (1e-2, 5e-4, 0.0),
    'svhn': (1e-2, 5e-5, 0.1), 'sun397': (1e-2, 5e-5, 0.0), 'patch_camelyon': (5e-3, 5e-4, 0.1),
    'eurosat': (1e-3, 5e-4, 0.1), 'resisc45': (5e-3, 5e-4, 0.0),
    'diabetic_retinopathy': (1e-3, 5e-5, 0.1), 'clevr_count': (1e-3, 5e-4, 0.1),
    'clevr_dist': (5e-3, 5e-4, 0.1), 'dmlab': (5e-3, 5e-4, 0.1), 'kitti': (5e-3, 5e-2, 0.1),
    'dsprites_loc': (5e-3, 5e-4, 0.1), 'dsprites_ori': (1e-3, 5e-4, 0.1),
    'smallnorb_azi': (1e-3, 5e-4, 0.1), 'smallnorb_ele': (1e-3, 5e-2, 0.2),
}

# bottleneck per dataset: visinf/adapter_plus conf/experiment/vtab/adapter_plus_dim1-8.yaml
ADAPTER_PLUS_DIM = {
    'cifar100': 1, 'caltech101': 4, 'dtd': 2, 'oxford_flowers102': 1, 'oxford_iiit_pet': 8,
    'svhn': 8, 'sun397': 1, 'patch_camelyon': 8, 'eurosat': 2, 'resisc45': 8,
    'diabetic_retinopathy': 8, 'clevr_count': 4, 'clevr_dist': 8, 'dmlab': 8, 'kitti': 8,
    'dsprites_loc': 8, 'dsprites_ori': 4, 'smallnorb_azi': 8, 'smallnorb_ele': 8,
}

# visinf/adapter_plus conf/experiment/vtab/vpt.yaml: VPT-deep prompt tokens per block per task
VPT_DEEP_LENGTH = {
    'cifar100': 10, 'caltech101': 10, 'dtd': 10, 'oxford_flowers102': 1, 'oxford_iiit_pet': 1,
    'svhn': 50, 'sun397': 5, 'patch_camelyon': 100, 'eurosat': 100, 'resisc45': 10,
    'diabetic_retinopathy': 1, 'clevr_count': 100, 'clevr_dist': 200, 'dmlab': 100, 'kitti': 100,
    'dsprites_loc': 100, 'dsprites_ori': 100, 'smallnorb_azi': 200, 'smallnorb_ele': 200,
}

# data_preprocessor arguments for the methods whose authors normalise with ImageNet mean / std
IMAGENET_NORM = (',\n                         mean=[123.675, 116.28, 103.53], '
                 'std=[58.395, 57.12, 57.375]')

METHODS = {
    # name: (peft base, schedule, description, lr/wd table or None for DTL's)
    'linear': ('linear', 'vtab_100e', 'linear probe', LINEAR, 'scripts/run_vit_fclayer.sh'),
    'full': ('full', 'vtab_100e', 'full fine-tuning', FULL, 'scripts/run_vit_fulltuning.sh'),
    'lora': ('lora', 'vtab_100e', 'LoRA (r=8 on q, v)', LORA, 'scripts/run_vit_lora.sh'),
    'adapter': ('adapter', 'vtab_100e', 'Adapter (bottleneck 8, after the MLP)', ADAPTER,
                'scripts/run_vit_adapter.sh'),
    'adaptformer': ('adaptformer', 'vtab_100e', 'AdaptFormer (bottleneck 8, parallel to the MLP)',
                    ADAPTER, 'scripts/run_vit_adaptformer.sh'),
    'bitfit': ('bitfit', 'vtab_100e', 'BitFit (all biases)', BITFIT, 'scripts/run_vit_bitfit.sh'),
    'lntune': ('lntune', 'vtab_100e', 'LN-tune (LayerNorm affine parameters)', LNTUNE,
               'scripts/run_vit_lntune.sh'),
    # V-PETL publishes no Partial-k script; its shared (Adapter) table is used
    'partial-1': ('partial-1', 'vtab_100e', 'Partial-1 (last block)', ADAPTER,
                  'scripts/run_vit_adapter.sh (shared table; no Partial-k values are published)'),
    'repadapter': ('repadapter', 'vtab_100e', 'RepAdapter (d=8, 2 groups, attn + MLP)',
                   REPADAPTER, 'luogen1996/RepAdapter configs/repblock/<dataset>.yaml'),
    'hydra': ('hydra', 'vtab_100e', 'Hydra (rank 2 on proj and fc2)', HYDRA,
              'extremebird/Hydra vtab1k/configs/hydra_both/<dataset>.yaml'),
    'fact-tt': ('fact-tt', 'vtab_100e', 'FacT-TT', FACT,
                'JieShibo/PETL-ViT FacT/configs/tt/<dataset>.yaml'),
    'fact-tk': ('fact-tk', 'vtab_100e', 'FacT-TK', FACT,
                'JieShibo/PETL-ViT FacT/configs/tk/<dataset>.yaml'),
    # no VTAB-1K per-dataset values are published for these two; V-PETL's shared table is used
    'houlsby': ('houlsby', 'vtab_100e', 'Houlsby adapter (bottleneck 8, after attention and MLP)',
                ADAPTER, 'scripts/run_vit_adapter.sh (shared table; none published for Houlsby)'),
    'compacter': ('compacter', 'vtab_100e', 'Compacter (PHM adapter after the MLP, n=4, d=64)',
                  ADAPTER, 'scripts/run_vit_adapter.sh (shared table; none published for '
                  'Compacter on VTAB-1K)'),
    'kadaptation': ('kadaptation', 'vtab_100e', 'KAdaptation (Kronecker updates of q and v)',
                    ADAPTER, 'scripts/run_vit_adapter.sh (shared table; KAdaptation publishes '
                    'no VTAB-1K values)'),
    # V-PETL Bench scripts/run_vit_vptshallow.sh: the fclayer (LINEAR) values, 100 prompts
    'vpt-shallow': ('vpt-shallow', 'vtab_100e', 'VPT-shallow (100 prompts)', LINEAR,
                    'scripts/run_vit_vptshallow.sh'),
    # VPT-deep has no script in V-PETL: the per-task prompt lengths of the VPT paper as Adapter+
    # re-runs VPT-deep (VPT_DEEP_LENGTH); its per-task lr is not in our references, so V-PETL's
    # shared table
    'vpt-deep': ('vpt-deep', 'vtab_100e', 'VPT-deep (per-task prompt length)', ADAPTER,
                 'scripts/run_vit_adapter.sh (shared table); prompt length: visinf/adapter_plus '
                 'conf/experiment/vtab/vpt.yaml (the VPT paper\'s lengths)'),
    # no VTAB-1K values are published for these (dense / video methods): V-PETL's shared table
    'mona': ('mona', 'vtab_100e', 'Mona (two multi-cognitive adapters per block)', ADAPTER,
             'scripts/run_vit_adapter.sh (shared table; Mona publishes dense settings only)'),
    'lorand': ('lorand', 'vtab_100e', 'LoRand (2 branches, kernel 8)', ADAPTER,
               'scripts/run_vit_adapter.sh (shared table; LoRand publishes dense settings only)'),
    'lst': ('lst', 'vtab_100e', 'LST (side width C / 8)', ADAPTER,
            'scripts/run_vit_adapter.sh (shared table; LST publishes no vision settings)'),
    'snf': ('snf', 'vtab_100e', 'SNF (flows on both shortcuts, 16 planar steps)', ADAPTER,
            'scripts/run_vit_adapter.sh (shared table; SNF releases no hyperparameters)'),
    'res-tuning-bypass': ('res-tuning-bypass', 'vtab_100e', 'Res-Tuning-Bypass (bottleneck 10)',
                          ADAPTER, 'scripts/run_vit_adapter.sh (shared table; no VTAB-1K values '
                          'in our references)'),
    'res-tuning': ('res-tuning', 'vtab_100e', 'Res-Tuning (prefix 10 beside attention, adapter 10 '
                   'beside MLP)', ADAPTER, 'scripts/run_vit_adapter.sh (shared table; no VTAB-1K '
                   'values in our references)'),
    'last': ('last', 'vtab_100e', 'LAST (rank 16, every block)', ADAPTER,
             'scripts/run_vit_adapter.sh (shared table; LAST releases no code or settings)'),
    'prefix': ('prefix', 'vtab_100e', 'prefix tuning (10 prefixes per layer)', ADAPTER,
               'scripts/run_vit_adapter.sh (shared table; V-PETL has no image prefix-tuning code)'),
    'patt': ('patt', 'vtab_100e', 'PATT (k, v; width 64)', ADAPTER,
             'scripts/run_vit_adapter.sh (shared table; PATT publishes video settings only)'),
    'adapter-plus': ('adapter-plus', 'adapter_plus_vtab_100e', 'Adapter+ (post-block, scaled)',
                     None, 'visinf/adapter_plus conf/experiment/vtab/adapter_plus_dim1-8.yaml'),
    'arc': ('arc', 'arc_vtab_100e', 'ARC (d=50, attention and MLP)', None,
            'DavidYanAnDe/ARC vtab_ARC_train.py defaults'),
    'arc-att': ('arc-att', 'arc_vtab_100e', 'ARC_att (d=50, attention only)', None,
                'DavidYanAnDe/ARC vtab_ARC_train.py defaults'),
    'sct': ('sct', 'vtab_100e', 'SCT (96 salient channels after attention)', SCT,
            'zhaohengyuan1/SCT run_model_sct.sh, configs/model_sct/vtab/<dataset>.yaml'),
    'gps': ('gps', 'gps_vtab_100e', 'GPS (1 connection per neuron, all biases)', None,
            'FightingFighting/GPS train_scripts/vit/vtab/<dataset>/train_gps.sh'),
    'noah': ('noah', 'vtab_100e', "NOAH's searched subnet (VPT-deep + LoRA + Adapter per block)",
             None, 'ZhangYuanhan-AI/NOAH experiments/NOAH/subnet/VTAB/ViT-B_prompt_<dataset>.yaml; '
             'retrain: lr 1e-3, wd 1e-4, no augmentation, ImageNet mean / std'),
    'dyt': ('dyt', 'vtab_100e', 'DyT (bottleneck 64, target activation rate 0.5)', None,
            'NUS-HPC-AI-Lab/Dynamic-Tuning train_vtab.sh / main_vtab.py (lr 1e-3 and wd 1e-4 '
            'fixed there, no augmentation, drop path 0)'),
    'dyt-moe': ('dyt-moe', 'vtab_100e', 'DyT with the MoE adapter (4 experts of bottleneck 64)',
                None, "DyT's settings (NUS-HPC-AI-Lab/Dynamic-Tuning train_vtab.sh; the MoE "
                'adapter has no released code or settings)'),
    'hst': ('hst', 'hst_vtab_100e', 'HST (meta tokens + side pyramid 32/48/64/72)', None,
            'AFeng-x/HST train_scripts/vit/vtab/<dataset>/train_s4.sh (no augmentation)'),
    'ssf': ('ssf', 'ssf_vtab_100e', 'SSF (scale-shift after norms and linears)', SSF,
            'SSF train_scripts/vit/vtab/main_script/main_ssf.sh'),
    'dtl': ('dtl', 'dtl_vtab_110e', 'DTL (r=2, add-back after blocks 6-11)', None,
            'heekhero/DTL train_scripts/vit/vtab/<dataset>/train_dtl.sh'),
    'dtl+': ('dtl+', 'dtl_vtab_110e', 'DTL+ (r=2, depthwise fusion conv)', None,
             'heekhero/DTL train_scripts/vit/vtab/<dataset>/train_dtl+.sh'),
}


def render(method, dataset):
    base, schedule, desc, table, source = METHODS[method]
    folder, classes = VTAB_DATASETS[dataset]
    smoothing, aug = DATASETS[dataset]
    backbone_args, method_args, batch, head_args = '', '', '', ''
    dp_args = ''
    if method.startswith('arc'):  # no augmentation, no label smoothing, ImageNet mean / std
        src = f'schedule: {source} (no per-dataset values)'
        optim, pipeline, batch = '', 'train_pipeline', 'batch_size=32, '
        dp_args = IMAGENET_NORM
    elif method == 'adapter-plus':  # no augmentation, no label smoothing, ImageNet mean / std
        src = f'bottleneck: {source}; schedule: its conf/train'
        method_args = f', bottleneck={ADAPTER_PLUS_DIM[dataset]}'
        optim, pipeline = '', 'train_pipeline'
        dp_args = IMAGENET_NORM
    elif method == 'noah':  # the subnet as a composition; retrain settings of NOAH's scripts
        src = f'subnet and schedule: {source}'
        method_args = None
        optim = 'optim_wrapper = dict(optimizer=dict(lr=0.001, weight_decay=0.0001))'
        pipeline = 'train_pipeline'
        dp_args = IMAGENET_NORM
    elif method == 'hst':  # the head reads the 72-d side feature
        lr, wd, dp = HST[dataset]
        optim = f'optim_wrapper = dict(optimizer=dict(lr={lr}, weight_decay={wd}))'
        src = f'lr / weight decay / side drop path: {source}'
        method_args = f', drop_path={dp}'
        head_args = ', in_channels=72'
        pipeline = 'train_pipeline'
    elif method.startswith('dyt'):  # the same for every dataset in the authors' code
        src = f'schedule: {source}'
        optim = 'optim_wrapper = dict(optimizer=dict(lr=0.001, weight_decay=0.0001))'
        backbone_args, pipeline = ', drop_path_rate=0.0', 'train_pipeline'
    elif method == 'gps':  # Adam, wd 0 (schedule base), no augmentation, per-dataset batch
        batch_size, lr = GPS[dataset]
        optim = f'optim_wrapper = dict(optimizer=dict(lr={lr}))'
        src = f'batch / lr / connections: {source}'
        method_args = ', connections=2' if dataset == 'patch_camelyon' else ''
        batch, pipeline = f'batch_size={batch_size}, ', 'train_pipeline'
    elif method == 'ssf':  # SSF: --no-aug, no label smoothing, batch 32, per-dataset drop path
        lr, wd, dp = table[dataset]
        optim = f'optim_wrapper = dict(optimizer=dict(lr={lr}, weight_decay={wd}))'
        src = f'lr / weight decay / drop path: {source}'
        backbone_args, batch = f', drop_path_rate={dp}', 'batch_size=32, '
        pipeline = 'train_pipeline'
    elif table is not None:
        lr, wd = table[dataset]
        optim = f'optim_wrapper = dict(optimizer=dict(lr={lr}, weight_decay={wd}))'
        src = f'lr / weight decay: V-PETL Bench {source}'
        pipeline = 'train_pipeline_aug' if aug else 'train_pipeline'
        if method == 'sct':
            src = f'lr / weight decay / augmentation: {source}'
            pipeline = 'train_pipeline_aug' if dataset in SCT_AUG else 'train_pipeline'
        if method == 'hydra':
            _, _, scale, dropout, batch_size = HYDRA_TABLE[dataset]
            src = f'lr / weight decay / scale / dropout / batch: {source}'
            method_args = f', scale={scale}, dropout={dropout}'
            batch = f'batch_size={batch_size}, '
        if method.startswith('fact'):
            rank, scale = FACT_TABLE[dataset][:2] if method == 'fact-tt' else \
                FACT_TABLE[dataset][2:]
            src = f'lr / weight decay / rank / scale: {source}'
            method_args = f', rank={rank}, scale={scale}'
        if method == 'repadapter':
            src = f'lr / weight decay / scale: {source}'
            method_args = f', scale={REPADAPTER_SCALE[dataset]}'
        if method == 'vpt-deep':
            src = f'lr / weight decay: V-PETL Bench {source}'
            method_args = f', length={VPT_DEEP_LENGTH[dataset]}'
    else:
        dtl, dtl_plus = DTL[dataset]
        lr, dp = dtl if method == 'dtl' else dtl_plus[:2]
        optim = f'optim_wrapper = dict(optimizer=dict(lr={lr}))'
        method_args = f', kernel_size={dtl_plus[2]}' if method == 'dtl+' else ''
        backbone_args = f', drop_path_rate={dp}'
        batch = 'batch_size=32, '
        src = f'lr, drop path{", kernel" if method == "dtl+" else ""}: {source}'
        pipeline = 'train_pipeline'  # DTL: resize only, no augmentation
    if method == 'full':
        optim += '\n' + full_schedule(lr)
    if batch:  # on its own line, before the dataset
        batch = batch.rstrip(', ') + ',\n    '
    method_cfg = (f'dict(_base_.peft_method{method_args})' if method_args is not None else
                  noah_methods(dataset))
    return f'''# VTAB-1K {dataset}, {desc}, ViT-B/16 (ImageNet-21k).
# {src}
_base_ = [
    '../_base_/models/vit-b16_in21k.py', '../_base_/peft/{base}.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/{schedule}.py',
    '../_base_/default_runtime.py'
]
vtab_name = '{dataset}'
data_root = 'data/vtab-1k/{folder}'
num_classes = {classes}
model = dict(
    backbone=dict(backbone=dict(_base_.peft_backbone{backbone_args}),
                  method={method_cfg}),
    head=dict(num_classes=num_classes{head_args},
              loss={loss(smoothing, method)}))
data_preprocessor = dict(num_classes=num_classes{dp_args})
train_dataloader = dict(
    {batch}dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.{pipeline}))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
{optim}
'''


# V-PETL Bench train/train_model_fulltuning.py: full fine-tuning warms up from 1e-4 (not 1e-6) and
# decays to 1e-6 (not 1e-5); the other methods keep the schedule base as it is.
FULL_WARMUP_FROM, FULL_LR_MIN = 1e-4, 1e-6


def full_schedule(lr):
    start = min(1.0, FULL_WARMUP_FROM / lr)
    return f'''# full fine-tuning: warm-up from 1e-4, cosine to 1e-6 (V-PETL train/train_model_fulltuning.py)
param_scheduler = [
    dict(type='LinearLR', start_factor={start:g}, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min={FULL_LR_MIN}, by_epoch=True, begin=10,
         end=100, convert_to_iter_based=True),
]'''


def loss(smoothing, method):
    no_smoothing = ('dtl', 'ssf', 'adapter-plus', 'arc', 'gps', 'noah', 'dyt', 'hst')
    if smoothing and not method.startswith(no_smoothing):  # none in these methods' scripts
        return (f"dict(type='LabelSmoothLoss', label_smooth_val={smoothing}, "
                "mode='original')")
    return "dict(type='CrossEntropyLoss', loss_weight=1.0)"


def render_swin(method, dataset):
    """DTL / DTL+ on Swin-B with the authors' Swin-B VTAB-1K scripts."""
    folder, classes = VTAB_DATASETS[dataset]
    (lr, dp), (plus_lr, plus_dp, kernel) = DTL_SWIN[dataset]
    if method == 'dtl+':
        lr, dp = plus_lr, plus_dp
    name = 'DTL+ (r=4, depthwise fusion conv 5)' if method == 'dtl+' else 'DTL (r=4)'
    kernel = kernel if method == 'dtl+' else 0
    return f'''# VTAB-1K {dataset}, {name}, Swin-B (ImageNet-22k).
# lr, drop path: heekhero/DTL train_scripts/swin/vtab/<dataset>/train_{method}.sh (side maps
# before blocks 4-23, add-back after blocks 14-23); data: DTL's shared VTAB transform (mean / std
# 0.5), which we infer its Swin script uses too
_base_ = [
    '../_base_/models/swin-b_in22k.py', '../_base_/peft/{method}.py',
    '../_base_/datasets/vtab.py', '../_base_/schedules/dtl_vtab_110e.py',
    '../_base_/default_runtime.py'
]
vtab_name = '{dataset}'
data_root = 'data/vtab-1k/{folder}'
num_classes = {classes}
model = dict(
    backbone=dict(backbone=dict(drop_path_rate={dp}),
                  method=dict(_base_.peft_method, rank=4, side_blocks=tuple(range(4, 24)),
                              add_blocks=tuple(range(14, 24)), kernel_size={kernel})),
    head=dict(num_classes=num_classes,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    batch_size=32,
    dataset=dict(data_root=data_root, num_classes=num_classes,
                 pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
test_dataloader = dict(dataset=dict(data_root=data_root, num_classes=num_classes))
optim_wrapper = dict(optimizer=dict(lr={lr}))
'''


SWIN_METHODS = ('dtl', 'dtl+')


def all_configs():
    """File name -> text of every generated config: the ViT-B methods, then DTL's Swin-B ones."""
    configs = {f'vit-b_{m}_{d}.py': render(m, d) for m in METHODS for d in DATASETS}
    configs.update({f'swin-b_{m}_{d}.py': render_swin(m, d) for m in SWIN_METHODS
                    for d in DATASETS})
    return configs


def main(argv=None) -> int:
    return sync_configs(all_configs(), OUT, __doc__.split('\n')[0], argv)


if __name__ == '__main__':
    sys.exit(main())

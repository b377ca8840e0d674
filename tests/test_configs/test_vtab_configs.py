"""The generated VTAB-1K configs load and carry the published hyperparameters."""
import glob
import os.path as osp

import pytest

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402

from tools.misc import gen_vtab_configs as GEN  # noqa: E402
from vpetl_mm.datasets import VTAB_DATASETS  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'vtab', 'vit-b_*.py')))
METHOD_TYPES = {
    'prefix': 'PrefixTuning', 'last': 'LAST', 'res-tuning-bypass': 'Res-Tuning-Bypass',
    'res-tuning': 'Res-Tuning',
    'snf': 'SNF', 'hst': 'HST', 'lst': 'LST', 'dyt': 'DyT', 'dyt-moe': 'DyT', 'mona': 'Mona',
    'lorand': 'LoRand',
    'patt': 'PATT', 'noah': 'VPT-deep', 'vpt-shallow': 'VPT-shallow', 'vpt-deep': 'VPT-deep',
    'kadaptation': 'KAdaptation', 'sct': 'SCT', 'gps': 'GPS', 'houlsby': 'Houlsby',
    'compacter': 'Compacter', 'linear': 'LinearProbe', 'full': 'FullFineTune', 'lora': 'LoRA',
    'adapter': 'Adapter', 'dtl': 'DTL', 'dtl+': 'DTL+', 'adaptformer': 'AdaptFormer',
    'bitfit': 'BitFit', 'lntune': 'LNTune', 'partial-1': 'PartialK', 'ssf': 'SSF',
    'repadapter': 'RepAdapter', 'hydra': 'Hydra', 'fact-tt': 'FacT-TT', 'fact-tk': 'FacT-TK',
    'adapter-plus': 'Adapter+', 'arc': 'ARC', 'arc-att': 'ARC_att'
}


def test_all_configs_exist():
    assert len(CONFIGS) == len(METHOD_TYPES) * 19


def test_committed_configs_are_what_the_tables_produce(tmp_path, capsys):
    """configs/vtab is exactly the generator's output, and ``--check`` names a drifted file."""
    assert GEN.main(['--check']) == 0, \
        'configs/vtab is stale: run python tools/misc/gen_vtab_configs.py'
    configs = GEN.all_configs()
    assert len(configs) == 19 * (len(GEN.METHODS) + len(GEN.SWIN_METHODS))
    for name, text in list(configs.items())[:2]:
        (tmp_path / name).write_text(text)
    first = next(iter(configs))
    (tmp_path / first).write_text(configs[first].replace('lr=', 'lr=10 * '))
    (tmp_path / 'vit-b_hand-written_dtd.py').write_text('_base_ = []\n')
    from tools.misc.config_tables import sync_configs
    assert sync_configs(configs, str(tmp_path), 'check', ['--check']) == 1
    printed = capsys.readouterr().out
    assert f'{first} differs from the tables' in printed
    assert 'vit-b_hand-written_dtd.py is not produced by the tables' in printed


def load(method, dataset):
    return Config.fromfile(osp.join(ROOT, 'configs', 'vtab', f'vit-b_{method}_{dataset}.py'))


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(p)[:-3] for p in CONFIGS])
def test_config_loads_with_protocol(path):
    cfg = Config.fromfile(path)
    _, method, dataset = osp.basename(path)[:-3].split('_', 2)
    methods = cfg.model.backbone.method  # NOAH: a composition, VPT-deep first
    first = methods[0] if method == 'noah' else methods
    assert first.type == METHOD_TYPES[method]
    assert cfg.vtab_name == dataset
    folder, n = VTAB_DATASETS[dataset]
    assert cfg.train_dataloader.dataset.split == 'train800val200'
    assert cfg.val_dataloader.dataset.split == 'test'
    assert cfg.test_dataloader.dataset.split == 'test'
    assert cfg.model.head.num_classes == n == cfg.data_preprocessor.num_classes
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == f'data/vtab-1k/{folder}'
        assert cfg[loader].dataset.num_classes == n
    assert cfg.train_cfg.val_interval == cfg.train_cfg.max_epochs  # evaluated once, at the end


@pytest.mark.parametrize('method,dataset,lr,wd', [
    ('lora', 'cifar100', 0.005, 0.005), ('lora', 'dmlab', 0.009, 0.1),
    ('adapter', 'cifar100', 0.01, 1.0), ('adapter', 'svhn', 0.001, 0.005),
    ('linear', 'cifar100', 1e-3, 1e-4), ('linear', 'eurosat', 0.06, 0.001),
    ('full', 'cifar100', 5e-4, 0.1), ('full', 'dtd', 1e-4, 5e-2),
    ('bitfit', 'cifar100', 3e-3, 1e-4), ('bitfit', 'caltech101', 0.006, 0.25),
    ('lntune', 'cifar100', 0.008, 0.01), ('lntune', 'kitti', 0.0072, 0.0001),
    ('adaptformer', 'oxford_flowers102', 0.05, 0.11), ('partial-1', 'resisc45', 0.01, 0.01),
])
def test_vpetl_hyperparameters(method, dataset, lr, wd):
    cfg = load(method, dataset)
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.optimizer.weight_decay == wd
    assert cfg.train_cfg.max_epochs == 100


# The published DTL / DTL+ VTAB-1K settings (Fu, Zhu and Wu, AAAI 2024; heekhero/DTL
# train_scripts/{vit,swin}/vtab/<dataset>/train_dtl(+).sh), written out here so that the committed
# configs are checked against the paper's scripts and not against the generator's own table:
# {dataset: (DTL lr, DTL drop path, DTL+ lr, DTL+ drop path, DTL+ kernel)}
DTL_VIT_PUBLISHED = {
    'cifar100': (3e-4, 0.1, 5e-4, 0.1, 3), 'caltech101': (1e-3, 0.0, 5e-4, 0.0, 3),
    'dtd': (3e-4, 0.1, 3e-4, 0.1, 5), 'oxford_flowers102': (8e-3, 0.2, 8e-3, 0.2, 5),
    'oxford_iiit_pet': (3e-4, 0.1, 3e-4, 0.0, 3), 'svhn': (8e-3, 0.2, 5e-3, 0.2, 5),
    'sun397': (5e-4, 0.1, 3e-3, 0.0, 5), 'patch_camelyon': (8e-3, 0.1, 3e-3, 0.0, 4),
    'eurosat': (8e-3, 0.0, 3e-3, 0.1, 3), 'resisc45': (8e-3, 0.1, 1e-2, 0.1, 3),
    'diabetic_retinopathy': (1e-4, 0.1, 1e-4, 0.1, 5), 'clevr_count': (1e-3, 0.2, 8e-4, 0.2, 5),
    'clevr_dist': (5e-4, 0.2, 1e-3, 0.2, 4), 'dmlab': (8e-4, 0.2, 5e-3, 0.2, 3),
    'kitti': (8e-3, 0.1, 8e-3, 0.2, 4), 'dsprites_loc': (1e-2, 0.0, 8e-3, 0.1, 4),
    'dsprites_ori': (8e-3, 0.0, 8e-4, 0.2, 5), 'smallnorb_azi': (3e-3, 0.2, 3e-3, 0.2, 5),
    'smallnorb_ele': (1e-3, 0.2, 1e-3, 0.1, 5),
}
DTL_SWIN_PUBLISHED = {
    'cifar100': (1e-3, 0.1, 3e-3, 0.0, 5), 'caltech101': (1e-3, 0.4, 5e-4, 0.4, 5),
    'dtd': (1e-4, 0.4, 8e-4, 0.1, 5), 'oxford_flowers102': (1e-3, 0.1, 5e-3, 0.1, 5),
    'oxford_iiit_pet': (3e-4, 0.1, 1e-4, 0.3, 5), 'svhn': (3e-3, 0.4, 5e-3, 0.5, 5),
    'sun397': (8e-4, 0.2, 3e-3, 0.1, 5), 'patch_camelyon': (3e-3, 0.0, 5e-3, 0.0, 5),
    'eurosat': (8e-4, 0.4, 1e-3, 0.3, 5), 'resisc45': (5e-3, 0.5, 3e-3, 0.5, 5),
    'diabetic_retinopathy': (1e-4, 0.5, 3e-4, 0.5, 5), 'clevr_count': (5e-4, 0.4, 5e-4, 0.5, 5),
    'clevr_dist': (3e-4, 0.5, 5e-4, 0.5, 5), 'dmlab': (3e-3, 0.3, 3e-3, 0.4, 5),
    'kitti': (1e-3, 0.5, 5e-3, 0.5, 5), 'dsprites_loc': (8e-3, 0.4, 1e-2, 0.5, 5),
    'dsprites_ori': (5e-4, 0.3, 8e-4, 0.5, 5), 'smallnorb_azi': (3e-3, 0.5, 3e-3, 0.5, 5),
    'smallnorb_ele': (8e-4, 0.5, 1e-3, 0.5, 5),
}


def published_dtl(table, method, dataset):
    """``(lr, drop path, kernel size)`` of ``method`` on ``dataset``; kernel 0 for plain DTL."""
    lr, dp, plus_lr, plus_dp, kernel = table[dataset]
    return (plus_lr, plus_dp, kernel) if method == 'dtl+' else (lr, dp, 0)


def test_published_dtl_tables_cover_vtab():
    assert set(DTL_VIT_PUBLISHED) == set(DTL_SWIN_PUBLISHED) == set(VTAB_DATASETS)


@pytest.mark.parametrize('method', ['dtl', 'dtl+'])
@pytest.mark.parametrize('dataset', sorted(DTL_VIT_PUBLISHED))
def test_dtl_hyperparameters(method, dataset):
    """DTL / DTL+ on ViT-B: r 2, add-back after blocks 6-11, the published per-dataset lr, drop
    path and DTL+ kernel, and the authors' fixed settings."""
    lr, dp, kernel = published_dtl(DTL_VIT_PUBLISHED, method, dataset)
    cfg = load(method, dataset)
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.paramwise_cfg.bias_decay_mult == 0.0
    assert cfg.model.backbone.backbone.drop_path_rate == dp
    assert cfg.model.backbone.backbone.out_type == 'avg_featmap'
    assert cfg.train_dataloader.batch_size == 32 and cfg.train_cfg.max_epochs == 110
    method_cfg = cfg.model.backbone.method
    assert method_cfg.type == METHOD_TYPES[method] and method_cfg.rank == 2
    assert tuple(method_cfg.add_blocks) == tuple(range(6, 12))
    assert method_cfg.get('kernel_size', 0) == kernel  # plain DTL: no fusion convolution
    assert cfg.model.head.loss.type == 'CrossEntropyLoss'


def test_ssf_hyperparameters():
    cfg = load('ssf', 'clevr_dist')
    assert (cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.weight_decay) == (5e-2,
                                                                                          5e-2)
    assert cfg.model.backbone.backbone.drop_path_rate == 0.1
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.model.head.loss.type == 'CrossEntropyLoss'


def test_repadapter_scale():
    cfg = load('repadapter', 'svhn')
    assert cfg.model.backbone.method.scale == 10
    assert cfg.optim_wrapper.optimizer.lr == 1e-3 and cfg.model.backbone.method.bottleneck == 8


def test_hydra_table():
    cfg = load('hydra', 'diabetic_retinopathy')
    assert cfg.model.backbone.method.scale == 4.5 and cfg.model.backbone.method.dropout == 0.2
    assert cfg.optim_wrapper.optimizer.lr == 5e-4 and cfg.train_dataloader.batch_size == 64


def test_fact_table():
    tt, tk = load('fact-tt', 'clevr_dist'), load('fact-tk', 'clevr_dist')
    assert (tt.model.backbone.method.rank, tt.model.backbone.method.scale) == (4, 10)
    assert (tk.model.backbone.method.rank, tk.model.backbone.method.scale) == (16, 10)


def test_label_smoothing_and_augmentation():
    assert load('lora', 'dtd').model.head.loss.label_smooth_val == 0.1
    assert load('lora', 'clevr_dist').model.head.loss.type == 'CrossEntropyLoss'
    types = [t.type for t in load('adapter', 'dtd').train_dataloader.dataset.pipeline]
    assert 'RandAugment' in types and 'RandomFlip' in types
    types = [t.type for t in load('adapter', 'cifar100').train_dataloader.dataset.pipeline]
    assert 'RandAugment' not in types


def test_full_finetuning_schedule():
    # V-PETL's full fine-tuning warms up from 1e-4 and decays to 1e-6
    for dataset, start in (('cifar100', 0.2), ('dtd', 1.0)):
        warmup, cosine = load('full', dataset).param_scheduler
        assert warmup.type == 'LinearLR' and warmup.start_factor == pytest.approx(start)
        assert cosine.type == 'CosineAnnealingLR' and cosine.eta_min == 1e-6
    assert load('lora', 'cifar100').param_scheduler[1].eta_min == 1e-5


def _with_val200(tmp_path, name):
    """An experiment config with vtab.py swapped for vtab_val200.py, plus the two protocol lines."""
    text = open(osp.join(ROOT, 'configs', 'vtab', f'{name}.py')).read()
    base = osp.join(ROOT, 'configs', '_base_')
    text = text.replace("'../_base_/datasets/vtab.py'", "'../_base_/datasets/vtab_val200.py'")
    text = text.replace("'../_base_/", f"'{base}/")
    text += ("train_cfg = dict(val_interval=10)\n"
             "default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))\n")
    path = tmp_path / f'{name.replace("+", "p")}_val200.py'
    path.write_text(text)
    return Config.fromfile(str(path))


def _check_val200(cfg, folder, n):
    splits = {k: cfg[k].dataset.split
              for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
    assert splits == {'train_dataloader': 'train800', 'val_dataloader': 'val200',
                      'test_dataloader': 'test'}
    for k in splits:
        assert cfg[k].dataset.data_root == f'data/vtab-1k/{folder}'
        assert cfg[k].dataset.num_classes == n
    val_steps = [t.type for t in cfg.val_dataloader.dataset.pipeline]
    assert 'RandAugment' not in val_steps and 'RandomFlip' not in val_steps
    assert cfg.train_cfg.val_interval == 10
    assert cfg.default_hooks.checkpoint.save_best == 'accuracy/top1'
    assert cfg.default_hooks.checkpoint.interval == 10  # the runtime's settings are kept


@pytest.mark.parametrize('name', ['vit-b_lora_dmlab', 'vit-b_dtl+_oxford_iiit_pet'])
def test_val200_as_dataset_base(tmp_path, name):
    cfg = _with_val200(tmp_path, name)
    folder, n = VTAB_DATASETS[name.split('_', 2)[2]]
    _check_val200(cfg, folder, n)
    assert cfg.train_cfg.max_epochs in (100, 110)


def test_val200_as_child_of_an_experiment(tmp_path):
    exp = osp.join(ROOT, 'configs', 'vtab', 'vit-b_adapter_kitti.py')
    child = tmp_path / 'child.py'
    child.write_text(
        f"_base_ = [{exp!r}]\n"
        "train_dataloader = dict(dataset=dict(split='train800'))\n"
        "val_dataloader = dict(dataset=dict(split='val200'))\n"
        "train_cfg = dict(val_interval=10)\n"
        "default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))\n")
    _check_val200(Config.fromfile(str(child)), 'kitti', 4)


def test_val200_base_alone():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'datasets', 'vtab_val200.py'))
    assert cfg.train_dataloader.dataset.split == 'train800'
    assert cfg.val_dataloader.dataset.split == 'val200'
    assert cfg.test_dataloader.dataset.split == 'test'


def test_adapter_plus_protocol():
    cfg = load('adapter-plus', 'resisc45')
    assert cfg.model.backbone.method.bottleneck == 8
    assert cfg.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert cfg.data_preprocessor.num_classes == 45
    assert cfg.optim_wrapper.paramwise_cfg.flat_decay_mult == 0.0
    assert cfg.model.head.loss.type == 'CrossEntropyLoss'


def test_arc_protocol():
    cfg = load('arc-att', 'kitti')
    assert cfg.model.backbone.method.rank == 50
    assert cfg.optim_wrapper.optimizer.lr == 1e-2 and cfg.optim_wrapper.optimizer.weight_decay == 0
    assert cfg.optim_wrapper.clip_grad.max_norm == 1.0
    assert cfg.train_dataloader.batch_size == 32 and cfg.data_preprocessor.num_classes == 4


@pytest.mark.parametrize('dataset,count', [('dtd', 287), ('sun397', 287), ('svhn', 432)])
def test_noah_subnets(dataset, count):
    """NOAH's subnets as compositions: per-block sizes, ViT-B/16 counts in thousands as computed
    from its YAMLs (prompts + LoRA + adapters, 287k for dtd / sun397 up to 432k for svhn)."""
    import torch
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import vpetl_mm  # noqa: F401
    cfg = load('noah', dataset)
    backbone = cfg.model.backbone.to_dict()
    backbone['pretrained'] = None
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        model = MODELS.build(backbone)
    assert list(model.peft.methods)[0] == 'vpt-deep'
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert round(trainable / 1000) == count
    prompts, ranks, dims = ([int(v) for v in row.split(',')]
                            for row in GEN.NOAH[dataset])
    assert trainable == sum(768 * p + 3072 * r + 1537 * d + 768
                            for p, r, d in zip(prompts, ranks, dims))


@pytest.mark.parametrize('dataset,length', [('cifar100', 10), ('oxford_flowers102', 1),
                                            ('svhn', 50), ('smallnorb_ele', 200)])
def test_vpt_deep_prompt_length_per_task(dataset, length):
    cfg = load('vpt-deep', dataset)
    assert cfg.model.backbone.method.length == length
    assert cfg.model.backbone.method.dropout == 0.1


SWIN_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'vtab', 'swin-b_*.py')))


def test_swin_configs_exist():
    assert len(SWIN_CONFIGS) == 2 * 19


@pytest.mark.parametrize('path', SWIN_CONFIGS, ids=[osp.basename(p)[:-3] for p in SWIN_CONFIGS])
def test_swin_dtl_config(path):
    """DTL / DTL+ on Swin-B with the authors' Swin-B VTAB scripts: r 4, side maps before blocks
    4-23, add-back after 14-23, the published per-dataset lr, drop path and DTL+ kernel."""
    cfg = Config.fromfile(path)
    _, method, dataset = osp.basename(path)[:-3].split('_', 2)
    lr, dp, kernel = published_dtl(DTL_SWIN_PUBLISHED, method, dataset)
    backbone = cfg.model.backbone
    assert backbone.backbone.type == 'SwinTransformer' and backbone.backbone.arch == 'base'
    assert backbone.backbone.drop_path_rate == dp and cfg.optim_wrapper.optimizer.lr == lr
    assert backbone.method.type == {'dtl': 'DTL', 'dtl+': 'DTL+'}[method]
    assert backbone.method.rank == 4
    assert tuple(backbone.method.side_blocks) == tuple(range(4, 24))
    assert tuple(backbone.method.add_blocks) == tuple(range(14, 24))
    assert backbone.method.kernel_size == kernel
    assert cfg.model.head.in_channels == 1024
    assert cfg.model.head.num_classes == VTAB_DATASETS[dataset][1]
    assert cfg.train_dataloader.batch_size == 32


@pytest.mark.parametrize('method,count', [('dtl', 90112), ('dtl+', 90112 + 25 * (512 + 1024))])
def test_swin_dtl_counts(method, count):
    """Swin-B: 18 side maps of 2 x 512 x 4 and 2 of 2 x 1024 x 4 = 90,112; DTL+ adds the 5 x 5
    depthwise convolutions of the two stages with add-back blocks."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from tests.test_models.checks import build_on_meta
    init_default_scope('mmpretrain')
    cfg = load_swin(method, 'cifar100')
    built = build_on_meta(MODELS, dict(cfg.model.backbone.to_dict(), pretrained=None))
    assert sum(p.numel() for p in built.parameters() if p.requires_grad) == count


def load_swin(method, dataset):
    return Config.fromfile(osp.join(ROOT, 'configs', 'vtab', f'swin-b_{method}_{dataset}.py'))

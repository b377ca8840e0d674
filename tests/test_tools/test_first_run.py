"""The README's "first run", as a user runs it: the tools as subprocesses from a working directory
laid out like the repository, the shipped configs changed only in size through --cfg-options,
the data and the pretrained checkpoint at the configs' own relative paths."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip('mmpretrain')
import vpetl_mm  # noqa: E402,F401  (allow-lists mmengine's checkpoint types for torch.load)
from tests._dist_helpers import free_port  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DTL_CFG = 'configs/vtab/vit-b_dtl_cifar100.py'
DEMO_CFG = 'configs/demo/vit-tiny_lora_digits.py'
# ViT-B/16 at 224 px -> DeiT-tiny (12 blocks: DTL's add-back blocks 6..11 stay) at 32 px
TINY_BACKBONE = dict(arch='deit-tiny', img_size=32, patch_size=8)
SIZE_ONLY = [
    'model.backbone.backbone.arch=deit-tiny', 'model.backbone.backbone.img_size=32',
    'model.backbone.backbone.patch_size=8', 'model.head.in_channels=192',
    *[f'{loader}.dataset.pipeline.1.scale=(32,32)'
      for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')],
    'train_dataloader.batch_size=8', 'train_dataloader.num_workers=0',
    'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
    'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
]


def repo_layout(tmp_path):
    """A working directory with the repository's configs and tools, as a checkout has them."""
    work = tmp_path / 'repo'
    work.mkdir()
    for name in ('configs', 'tools'):
        os.symlink(osp.join(ROOT, name), work / name)
    return work


def write_vtab(folder, n_train=16, n_test=8, classes=3, seed=0):
    """A VTAB-1K folder with RGB images of different sizes."""
    rng = np.random.RandomState(seed)
    sizes = {'train800': n_train * 3 // 4, 'val200': n_train - n_train * 3 // 4,
             'test': n_test}
    for split, n in sizes.items():
        os.makedirs(folder / 'images' / split)
        lines = []
        for i in range(n):
            h, w = rng.randint(20, 60, size=2)
            pixels = rng.randint(0, 256, size=(h, w, 3), dtype=np.uint8)
            name = f'images/{split}/{i:06d}.jpg'
            Image.fromarray(pixels).save(folder / name)
            lines.append(f'{name} {i % classes}\n')
        (folder / f'{split}.txt').write_text(''.join(lines))
    (folder / 'train800val200.txt').write_text(
        (folder / 'train800.txt').read_text() + (folder / 'val200.txt').read_text())


def write_pretrained(path, **arch):
    """A 'pretrained' mmpretrain ViT checkpoint (random weights) at ``path``."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    vit = MODELS.build(dict(type='VisionTransformer', qkv_bias=True,
                            norm_cfg=dict(type='LN', eps=1e-6), init_cfg=None, **arch))
    vit.init_weights()
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': vit.state_dict()}, path)


def run(cmd, cwd, timeout=600):
    """Run ``cmd`` as a user with the project's venv activated would; return its output."""
    env = dict(os.environ, PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
               PORT=str(free_port()))
    env.pop('PYTHONPATH', None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(cmd)} failed:\n{output[-6000:]}'
    return output


def top1(output, mode):
    """The last ``accuracy/top1`` an mmengine log line of ``mode`` (val, test) shows."""
    found = re.findall(rf'Epoch\({mode}\).*?accuracy/top1: ([\d.]+)', output)
    assert found, f'no {mode} accuracy in the output:\n{output[-3000:]}'
    return float(found[-1])


def checkpoint_moved_dtl(path):
    """DTL's up projections start at zero: after training some must have moved."""
    state = torch.load(path, map_location='cpu', weights_only=True)['state_dict']
    ups = [v for k, v in state.items() if 'peft.methods.dtl' in k and k.endswith('.up')]
    assert ups, sorted(state)
    return any(v.abs().sum() > 0 for v in ups)


@pytest.fixture
def vtab_repo(tmp_path):
    work = repo_layout(tmp_path)
    write_vtab(work / 'data' / 'vtab-1k' / 'cifar')
    write_pretrained(str(work / 'pretrained' / 'vit-b16_in21k.pth'), **TINY_BACKBONE)
    return work


def test_train_then_test_from_repository_root(vtab_repo):
    out = run([sys.executable, 'tools/train.py', DTL_CFG, '--cfg-options', *SIZE_ONLY],
              cwd=vtab_repo)
    work_dir = vtab_repo / 'work_dirs' / 'vit-b_dtl_cifar100'
    ckpt = work_dir / 'epoch_2.pth'
    # the work folder the README describes
    assert ckpt.is_file() and (work_dir / 'last_checkpoint').is_file()
    assert (work_dir / 'vit-b_dtl_cifar100.py').is_file()  # the config as it ran
    logs = [f for d in work_dir.iterdir() if d.is_dir() for f in d.glob('*.log')]
    assert logs and 'Trainable parameters' in logs[0].read_text()
    assert checkpoint_moved_dtl(ckpt)
    trained = top1(out, 'val')

    out = run([sys.executable, 'tools/test.py', DTL_CFG, str(ckpt.relative_to(vtab_repo)),
               '--out', 'res.json', '--cfg-options', *SIZE_ONLY], cwd=vtab_repo)
    assert top1(out, 'test') == trained
    metrics = json.loads((vtab_repo / 'res.json').read_text())  # --out .json: the metrics
    assert metrics['accuracy/top1'] == pytest.approx(trained, abs=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path of --amp')
def test_amp_trains_in_bf16_on_the_cpu(vtab_repo):
    """``--amp`` on a machine without a GPU trains under bf16 autocast and checkpoints as
    usual."""
    out = run([sys.executable, 'tools/train.py', DTL_CFG, '--amp', '--cfg-options', *SIZE_ONLY],
              cwd=vtab_repo)
    assert 'bfloat16 autocast on the CPU (vpetl_mm.AutocastOptimWrapper)' in out
    ckpt = vtab_repo / 'work_dirs' / 'vit-b_dtl_cifar100' / 'epoch_2.pth'
    assert checkpoint_moved_dtl(ckpt)
    top1(out, 'val')  # the validation ran and logged its accuracy


def test_compile_trains_through_torch_compile(vtab_repo):
    """``--compile aot_eager`` (no C++ compiler needed for that backend): the model's forward
    runs compiled; the run trains and checkpoints as usual."""
    out = run([sys.executable, 'tools/train.py', DTL_CFG, '--compile', 'aot_eager',
               '--cfg-options', *SIZE_ONLY], cwd=vtab_repo)
    assert "the model runs through torch.compile({'backend': 'aot_eager'})" in out
    ckpt = vtab_repo / 'work_dirs' / 'vit-b_dtl_cifar100' / 'epoch_2.pth'
    assert checkpoint_moved_dtl(ckpt)
    top1(out, 'val')  # the validation ran and logged its accuracy


def test_dist_train_then_test_from_repository_root(vtab_repo):
    """The design card's example: tools/dist_train.sh CONFIG 2 (two CPU processes)."""
    out = run(['bash', 'tools/dist_train.sh', DTL_CFG, '2', '--cfg-options', *SIZE_ONLY],
              cwd=vtab_repo)
    ckpt = vtab_repo / 'work_dirs' / 'vit-b_dtl_cifar100' / 'epoch_2.pth'
    assert checkpoint_moved_dtl(ckpt)
    trained = top1(out, 'val')
    out = run([sys.executable, 'tools/test.py', DTL_CFG, str(ckpt), '--cfg-options',
               *SIZE_ONLY], cwd=vtab_repo)
    assert top1(out, 'test') == trained


def test_digits_demo_config_without_the_demo_script(tmp_path):
    """configs/demo/*.py run through the tools alone once their data and source backbone sit
    at the configs' paths (the demo script otherwise writes both)."""
    from vpetl_mm.datasets import export_digits_vtab
    work = repo_layout(tmp_path)
    export_digits_vtab(str(work / 'data' / 'digits_vtab' / 'target'), classes=range(5, 10),
                       shift='invert_rotate', train_fraction=0.2)
    write_pretrained(str(work / 'work_dirs' / 'digits_demo' / 'source_backbone.pth'),
                     arch=dict(embed_dims=64, num_layers=4, num_heads=4,
                               feedforward_channels=128), img_size=32, patch_size=8,
                     out_type='cls_token')
    epochs = ['--cfg-options', 'train_cfg.max_epochs=1']
    run(['bash', 'tools/dist_train.sh', DEMO_CFG, '2', *epochs], cwd=work)
    ckpt = work / 'work_dirs' / 'vit-tiny_lora_digits' / 'epoch_1.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    ups = [v for k, v in state.items() if '.lora_' in k and k.endswith('.up')]
    assert ups and any(v.abs().sum() > 0 for v in ups)  # LoRA's up starts at zero
    out = run([sys.executable, 'tools/test.py', DEMO_CFG, str(ckpt.relative_to(work))],
              cwd=work)
    assert 0 <= top1(out, 'test') <= 100


def test_missing_data_is_reported_with_the_config_key(tmp_path):
    work = repo_layout(tmp_path)
    proc = subprocess.run([sys.executable, 'tools/train.py', DTL_CFG], cwd=work,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    expected = (f"train_dataloader.dataset.data_root='data/vtab-1k/cifar' (resolved to "
                f"{work / 'data' / 'vtab-1k' / 'cifar'}) is not a folder")
    assert expected in proc.stderr, proc.stderr[-3000:]


def test_missing_test_image_stops_the_run_before_training(tmp_path):
    """A test list naming an image that is not there fails at the start, naming list and line
    (not with a bare FileNotFoundError in the first evaluation, after the training epochs):
    VTAB-1K validates on the test split."""
    work = repo_layout(tmp_path)
    folder = work / 'data' / 'vtab-1k' / 'cifar'
    write_vtab(folder)
    (folder / 'images' / 'test' / '000003.jpg').unlink()
    (folder / 'images' / 'test' / '000005.jpg').unlink()
    proc = subprocess.run([sys.executable, 'tools/train.py', DTL_CFG, '--cfg-options',
                           *SIZE_ONLY], cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    test_list = folder / 'test.txt'
    for line, name in ((4, '000003.jpg'), (6, '000005.jpg')):
        expected = (f"val_dataloader.dataset.split='test' {test_list}:{line}: image "
                    f"{folder / 'images' / 'test' / name} does not exist")
        assert expected in proc.stderr, proc.stderr[-3000:]
    assert not (work / 'work_dirs').exists() or not list((work / 'work_dirs').rglob('*.pth'))


def test_command_line_options_come_before_loader_settings():
    """``--cfg-options ...num_workers=0`` turns persistent workers off for that loader."""
    from mmengine.config import Config
    sys.path.insert(0, ROOT)
    from tools import test as test_tool
    from tools import train as train_tool
    argv = [osp.join(ROOT, DTL_CFG), '--cfg-options', 'train_dataloader.num_workers=0']
    cfg = train_tool.merge_args(Config.fromfile(argv[0]), train_tool.parse_args(argv))
    assert cfg.train_dataloader.num_workers == 0
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True  # num_workers=4 from the config
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')  # mmpretrain's
    argv = [argv[0], 'x.pth', '--cfg-options', 'test_dataloader.num_workers=0']
    cfg = test_tool.merge_args(Config.fromfile(argv[0]), test_tool.parse_args(argv))
    assert cfg.test_dataloader.persistent_workers is False


def test_out_and_amp_options(capsys):
    """``--out`` by suffix: metrics for .json / .yaml, predictions for .pkl; an unknown suffix
    or predictions in json are refused at parse time. ``--amp`` picks mmengine's
    ``AmpOptimWrapper`` on a GPU and bf16 autocast on the CPU."""
    from mmengine.config import Config
    sys.path.insert(0, ROOT)
    from tools import test as test_tool
    from tools import train as train_tool
    cfg_file = osp.join(ROOT, DTL_CFG)
    assert test_tool.parse_args([cfg_file, 'x.pth', '--out', 'r.json']).out_item == 'metrics'
    assert test_tool.parse_args([cfg_file, 'x.pth', '--out', 'r.yaml']).out_item == 'metrics'
    args = test_tool.parse_args([cfg_file, 'x.pth', '--out', 'r.pkl'])
    assert args.out_item == 'pred'
    cfg = test_tool.merge_args(Config.fromfile(cfg_file), args)
    assert cfg.test_evaluator[-1] == dict(type='DumpResults', out_file_path='r.pkl')
    cfg = test_tool.merge_args(Config.fromfile(cfg_file), test_tool.parse_args(
        [cfg_file, 'x.pth', '--out', 'r.json']))
    assert 'DumpResults' not in str(cfg.test_evaluator)
    for bad, message in ((['--out', 'r.txt'], "unknown suffix '.txt'"),
                         (['--out', 'r.json', '--out-item', 'pred'], 'written as pickle')):
        with pytest.raises(SystemExit):
            test_tool.parse_args([cfg_file, 'x.pth', *bad])
        assert message in capsys.readouterr().err
    for argv, backend in (([], None), (['--compile'], 'inductor'),
                          (['--compile', 'aot_eager'], 'aot_eager')):
        cfg = train_tool.merge_args(Config.fromfile(cfg_file),
                                    train_tool.parse_args([cfg_file, *argv]))
        hooks = [h for h in cfg.get('custom_hooks', []) if h['type'] == 'vpetl_mm.CompileHook']
        assert hooks == ([dict(type='vpetl_mm.CompileHook', backend=backend)] if backend else [])
    cfg = train_tool.merge_args(Config.fromfile(cfg_file),
                                train_tool.parse_args([cfg_file, '--amp']))
    if torch.cuda.is_available():
        assert (cfg.optim_wrapper.type, cfg.optim_wrapper.loss_scale) == (
            'AmpOptimWrapper', 'dynamic')
    else:  # bf16 autocast on the CPU, no loss scale
        assert cfg.optim_wrapper.type == 'vpetl_mm.AutocastOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16' and 'loss_scale' not in cfg.optim_wrapper


def test_tensorboard_option(monkeypatch):
    """``--tensorboard`` adds mmengine's TensorBoard backend beside the config's own (once), and
    without the package stops with the install command."""
    import importlib.util

    from mmengine.config import Config
    sys.path.insert(0, ROOT)
    from tools import train as train_tool
    cfg_file = osp.join(ROOT, DTL_CFG)
    argv = train_tool.parse_args([cfg_file, '--tensorboard'])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'tensorboard' else real(name, *a))
    with pytest.raises(SystemExit, match=r'--tensorboard needs the tensorboard package \(pip '
                       r'install tensorboard\)'):
        train_tool.merge_args(Config.fromfile(cfg_file), argv)
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: object())
    cfg = train_tool.merge_args(Config.fromfile(cfg_file), argv)
    own = Config.fromfile(cfg_file).visualizer.vis_backends
    assert cfg.visualizer.vis_backends == [*own, dict(type='TensorboardVisBackend')]
    train_tool.add_tensorboard(cfg)
    assert len(cfg.visualizer.vis_backends) == len(own) + 1


def test_dump_metrics_formats(tmp_path):
    import pickle
    sys.path.insert(0, ROOT)
    from tools import test as test_tool
    metrics = {'accuracy/top1': 81.25, 'mAP': np.float32(0.5)}
    for name in ('m.json', 'm.yaml', 'm.pkl'):
        test_tool.dump_metrics(metrics, str(tmp_path / name))
    assert json.loads((tmp_path / 'm.json').read_text()) == {'accuracy/top1': 81.25, 'mAP': 0.5}
    assert 'accuracy/top1: 81.25' in (tmp_path / 'm.yaml').read_text()
    assert pickle.loads((tmp_path / 'm.pkl').read_bytes())['accuracy/top1'] == 81.25

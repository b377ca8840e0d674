"""tools/train.py and tools/test.py on a tiny LoRA run: trainable-only checkpoints, test from
them, resume, and the distributed launcher on the CPU."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import vpetl_mm  # noqa: E402,F401
from tests._dist_helpers import free_port  # noqa: E402
from tools import test as test_tool  # noqa: E402
from tools import train as train_tool  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LORA_CFG = osp.join(ROOT, 'configs', 'demo', 'vit-tiny_lora_digits.py')


def tiny_options(data_root, pretrained, epochs):
    return [
        f'train_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        'train_dataloader.dataset.num_classes=3', 'test_dataloader.dataset.num_classes=3',
        'model.head.num_classes=3', 'data_preprocessor.num_classes=3',
        'model.backbone.backbone.arch.embed_dims=32',
        'model.backbone.backbone.arch.num_heads=2',
        'model.backbone.backbone.arch.feedforward_channels=64',
        'model.head.in_channels=32', f'model.backbone.pretrained={pretrained}',
        f'train_cfg.max_epochs={epochs}', 'param_scheduler.0.T_max=3',
        'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=5',
        'randomness.seed=0', 'log_level=WARNING',
    ]


class Crash(RuntimeError):
    pass


@HOOKS.register_module(force=True)
class CrashAfterEpochHook(Hook):
    """Simulates a run killed right after the checkpoint of epoch ``epoch`` was written."""
    priority = 'LOWEST'

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch == self.epoch:
            raise Crash(f'killed after epoch {self.epoch}')


def runner_for(work_dir, options, resume=None, crash_after=None):
    argv = [LORA_CFG, '--work-dir', str(work_dir), '--cfg-options', *options]
    if resume:
        argv[1:1] = ['--resume'] if resume == 'auto' else ['--resume', resume]
    cfg = train_tool.merge_args(Config.fromfile(LORA_CFG), train_tool.parse_args(argv))
    if crash_after:
        cfg.custom_hooks.append(dict(type='CrashAfterEpochHook', epoch=crash_after))
    return Runner.from_cfg(cfg)


def trainable(runner):
    return {k: v.clone() for k, v in vpetl_mm.engine.trainable_state_dict(runner.model).items()}


def test_checkpoint_test_and_resume(tmp_path, digits_root, tiny_pretrained):
    # 3 epochs in one go
    full = runner_for(tmp_path / 'full', tiny_options(digits_root, tiny_pretrained, 3))
    full.train()
    in_memory = full.test()['accuracy/top1']
    final = trainable(full)

    ckpt = tmp_path / 'full' / 'epoch_3.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    keys = set(state['state_dict'])
    assert keys and all('.lora_' in k or k.startswith('head.') for k in keys), keys
    assert state['meta']['peft'] == [[dict(type='LoRA', rank=8, alpha=8, targets=('q', 'v'))]]
    assert 'optimizer' in state and 'message_hub' in state
    assert os.path.getsize(ckpt) < 200_000  # only the trainable weights
    assert not glob.glob(str(tmp_path / 'full' / '.tmp_*'))  # atomic writes leave nothing

    # the trainable-only checkpoint through tools/test.py: same metric (merged and not)
    for extra in ([], ['--no-merge']):
        metrics = test_tool.main([LORA_CFG, str(ckpt), '--work-dir', str(tmp_path / 'test'),
                                  *extra, '--cfg-options',
                                  *tiny_options(digits_root, tiny_pretrained, 3)])
        assert metrics['accuracy/top1'] == pytest.approx(in_memory, abs=1e-9)

    # killed after epoch 2, then --resume (latest checkpoint): identical trainable weights
    part = runner_for(tmp_path / 'part', tiny_options(digits_root, tiny_pretrained, 3),
                      crash_after=2)
    with pytest.raises(Crash):
        part.train()
    resumed = runner_for(tmp_path / 'part', tiny_options(digits_root, tiny_pretrained, 3),
                         resume='auto')
    resumed.train()
    assert resumed.epoch == 3
    after = trainable(resumed)
    assert after.keys() == final.keys()
    for k in final:
        torch.testing.assert_close(after[k], final[k], rtol=0, atol=0, msg=k)


def test_checkpoint_of_other_method_is_refused(tmp_path, digits_root, tiny_pretrained):
    r = runner_for(tmp_path / 'a', tiny_options(digits_root, tiny_pretrained, 1))
    r.train()
    options = tiny_options(digits_root, tiny_pretrained, 1) + ['model.backbone.method.rank=4']
    with pytest.raises(ValueError, match='trained with PEFT methods'):
        test_tool.main([LORA_CFG, str(tmp_path / 'a' / 'epoch_1.pth'), '--work-dir',
                        str(tmp_path / 'b'), '--cfg-options', *options])


DIST_CFG = '''
_base_ = ['{base}']
pretrained = '{pretrained}'
data_root = '{data_root}'
pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32)),
            dict(type='PackInputs')]
model = dict(
    backbone=dict(
        backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=4, num_heads=2,
                                feedforward_channels=64),
                      img_size=32, patch_size=8, drop_path_rate=0.0),
        pretrained=pretrained,
        method=dict(add_blocks=(2, 3))),
    head=dict(num_classes=3, in_channels=32))
data_preprocessor = dict(num_classes=3)
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, num_classes=3, pipeline=pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, num_classes=3, pipeline=pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True)]
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
custom_imports = dict(imports=['vpetl_mm', 'tests._dist_helpers'], allow_failed_imports=False)
custom_hooks = [dict(type='vpetl_mm.PEFTSummaryHook'),
                dict(type='vpetl_mm.TrainableCheckpointHook'),
                dict(type='DumpTrainablePerRankHook')]
'''


def test_dist_train_two_processes_on_cpu(tmp_path, digits_root, tiny_pretrained):
    """tools/dist_train.sh, 2 CPU processes (gloo), DTL for one epoch: the trainable weights
    move, both ranks end with identical ones, and rank 0's checkpoint holds them."""
    base = osp.join(ROOT, 'configs', 'vtab', 'vit-b_dtl_cifar100.py')
    if not osp.exists(base):
        pytest.skip('VTAB configs not generated')
    cfg = tmp_path / 'tiny_dtl.py'
    cfg.write_text(DIST_CFG.format(base=base, pretrained=tiny_pretrained, data_root=digits_root))
    env = dict(os.environ, PORT=str(free_port()), PYTHON=sys.executable, OMP_NUM_THREADS='1')
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), str(cfg), '2',
                          '--work-dir', str(tmp_path / 'work')],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    r0 = torch.load(tmp_path / 'work' / 'trainable_rank0.pth', weights_only=True)
    r1 = torch.load(tmp_path / 'work' / 'trainable_rank1.pth', weights_only=True)
    assert r0.keys() == r1.keys() and any('peft.' in k for k in r0)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # training moved the weights: DTL's up projections start at exactly zero, one per block
    ups = [k for k in r0 if k.startswith('backbone.peft.') and k.endswith('.up')]
    assert len(ups) == 4, sorted(r0)
    for k in ups:
        assert r0[k].abs().min().item() > 0, f'{k} did not train'
    assert [osp.basename(p) for p in glob.glob(str(tmp_path / 'work' / '*.pth'))
            if 'epoch' in p] == ['epoch_1.pth']
    # rank 0's checkpoint holds the same trained weights as rank 1's dump
    saved = torch.load(tmp_path / 'work' / 'epoch_1.pth', map_location='cpu',
                       weights_only=True)['state_dict']
    assert saved.keys() == r1.keys()
    for k in r1:
        assert torch.equal(saved[k], r1[k]), k


@pytest.mark.parametrize('method', ['sct', 'gps'])
def test_selection_pass_runs_once_and_resumes(tmp_path, digits_root, tiny_pretrained, method,
                                              monkeypatch):
    """SCT / GPS select before training through the default runtime's PEFTSelectionHook; a
    killed run resumes with the stored selection (the pass is not run again) and ends where
    an uninterrupted run ends."""
    cfg_file = osp.join(ROOT, 'configs', 'demo', f'vit-tiny_{method}_digits.py')
    options = tiny_options(digits_root, tiny_pretrained, 2)
    if method == 'sct':
        options.append('model.backbone.method.top_n=4')

    def runner(work_dir, resume=False, crash_after=None):
        argv = [cfg_file, '--work-dir', str(work_dir), '--cfg-options', *options]
        if resume:
            argv[1:1] = ['--resume']
        cfg = train_tool.merge_args(Config.fromfile(cfg_file), train_tool.parse_args(argv))
        if crash_after:
            cfg.custom_hooks.append(dict(type='CrashAfterEpochHook', epoch=crash_after))
        return Runner.from_cfg(cfg)

    full = runner(tmp_path / 'full')
    full.train()
    final = trainable(full)
    selection = {k for k in final if k.endswith(('.sct.index', 'selected')) or
                 '.connections_' in k}
    assert selection, sorted(final)

    part = runner(tmp_path / 'part', crash_after=1)
    with pytest.raises(Crash):
        part.train()
    method_cls = type(next(iter(vpetl_mm.models.get_peft_state(part.model)[0].methods.values())))

    def no_second_pass(self, model, batches):
        raise AssertionError('the selection pass ran again on resume')
    monkeypatch.setattr(method_cls, 'select', no_second_pass)
    resumed = runner(tmp_path / 'part', resume=True)
    resumed.train()
    after = trainable(resumed)
    assert after.keys() == final.keys()
    for k in final:
        torch.testing.assert_close(after[k], final[k], rtol=0, atol=0, msg=k)

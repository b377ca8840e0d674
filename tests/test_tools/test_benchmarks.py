"""The benchmark scripts run on any mmpretrain ViT arch: widths and depths come from the built
model (a newcomer's ``--arch deit-tiny`` / ``--arch s`` used to fail on a fixed head width and
DTL's ViT-B block list)."""
import pytest

pytest.importorskip('mmpretrain')
from tools.analysis_tools import benchmark_train  # noqa: E402


@pytest.mark.parametrize('arch, width, depth', [('deit-tiny', 192, 12), ('s', 768, 8)])
def test_benchmark_train_other_archs(arch, width, depth, capsys):
    benchmark_train.main(['--arch', arch, '--methods', 'dtl', 'lora', '--batch-size', '2',
                          '--steps', '1', '--img-size', '32', '--device', 'cpu'])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(('dtl', 'lora'))}
    # DTL: a rank-2 down / up pair per block (no biases); LoRA: q and v, rank 8, per block
    assert int(rows['dtl'][1].replace(',', '')) == depth * 2 * 2 * width + 100 * (width + 1)
    assert int(rows['lora'][1].replace(',', '')) == (depth * 2 * 2 * 8 * width +
                                                     100 * (width + 1))


def test_dtl_blocks_follow_depth():
    assert benchmark_train.method_config('dtl', 8)['add_blocks'] == (4, 5, 6, 7)
    assert benchmark_train.method_config('dtl', 12)['add_blocks'] == tuple(range(6, 12))
    assert 'add_blocks' not in benchmark_train.method_config('lora', 12)


def test_benchmark_train_video_backbone(capsys):
    """--video: the methods on mmaction's VideoMAE-layout ViT of the arch's sizes, on clips;
    counts as on the image ViT of those sizes (the same blocks)."""
    benchmark_train.main(['--arch', 'deit-tiny', '--video', '--frames', '4', '--methods', 'lora',
                          'dtl', '--batch-size', '1', '--steps', '1', '--img-size', '32',
                          '--device', 'cpu'])
    out = capsys.readouterr().out
    assert '4 x 32px clips (mmaction ViT)' in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(('dtl', 'lora'))}
    assert int(rows['lora'][1].replace(',', '')) == 12 * 2 * 2 * 8 * 192 + 100 * 193
    assert int(rows['dtl'][1].replace(',', '')) == 12 * 2 * 2 * 192 + 100 * 193

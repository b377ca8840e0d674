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


def test_benchmark_train_dense(capsys):
    """--dense det: the dense table's methods as their configs/dense configs set them, on the
    whole RetinaNet of a 16-wide Swin (2 blocks per stage: Partial-1 tunes stages.3.blocks.1):
    a row per method with numeric memory and time, the backbone's tuned parameters by method
    (E3VA's highway and LN-tune's norms below Full's whole Swin), and a method without a config
    listed by name while the others still run."""
    benchmark_train.main(['--dense', 'det', '--methods', 'e3va', 'partial-1', 'nope', 'full',
                          '--embed-dims', '16', '--depths', '2', '2', '2', '2',
                          '--head-channels', '16', '--img-size', '64', '--batch-size', '1',
                          '--steps', '1', '--device', 'cpu'])
    out = capsys.readouterr().out
    assert 'RetinaNet + FPN on Swin (embed 16, depths 2-2-2-2, heads 1-1-2-4)' in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(('e3va', 'partial-1', 'full', 'nope'))}
    for method in ('e3va', 'partial-1', 'full'):
        trainable, tuned, mib, mib_ratio, seconds, s_ratio, images = rows[method][1:]
        assert int(tuned.replace(',', '')) < int(trainable.replace(',', ''))
        assert float(mib) >= 0 and float(seconds) > 0 and float(mib_ratio) >= 0
        assert float(images) == pytest.approx(1 / float(seconds), rel=0.05, abs=0.1)  # batch 1
    assert rows['full'][4] == rows['full'][6] == '1.00'
    tuned = {m: int(rows[m][2].replace(',', '')) for m in ('e3va', 'partial-1', 'full')}
    assert 0 < tuned['e3va'] < tuned['full'] and 0 < tuned['partial-1'] < tuned['full']
    assert rows['nope'][1:3] == ['failed:', 'unknown']
    assert 'retinanet_swin-l-p4-w7_nope_fpn_1x_voc0712.py' in out


def test_dense_swin_sizes():
    """The shrunk Swin keeps the config's head width (32 on Swin-L) unless --num-heads is given,
    and the segmentor's heads read its stage widths."""
    args = benchmark_train.parse_args(['--dense', 'seg', '--embed-dims', '64', '--depths', '2',
                                       '2', '6', '2', '--head-channels', '32', '--img-size',
                                       '96'])
    model = benchmark_train.dense_model_cfg('lora', args)
    swin = model.backbone.backbone
    assert (swin.embed_dims, swin.depths, swin.num_heads) == (64, [2, 2, 6, 2], [2, 4, 8, 16])
    assert model.decode_head.in_channels == [64, 128, 256, 512]
    assert model.auxiliary_head.in_channels == 256
    assert (model.decode_head.channels, model.auxiliary_head.channels) == (32, 16)
    assert model.data_preprocessor.size == (96, 96) and model.backbone.pretrained is None
    assert model.backbone.method.type == 'LoRA'
    args.num_heads = [1, 1, 1, 1]
    assert benchmark_train.dense_model_cfg('lora', args).backbone.backbone.num_heads == [1] * 4
    full = benchmark_train.dense_model_cfg('full', args)  # SyncBN heads in the config: BN here
    assert full.decode_head.norm_cfg.type == full.auxiliary_head.norm_cfg.type == 'BN'


def test_vit_mode_keeps_method_choices():
    with pytest.raises(SystemExit):
        benchmark_train.parse_args(['--methods', 'e3va'])
    assert benchmark_train.parse_args([]).methods == ['dtl', 'lora', 'full']
    assert benchmark_train.parse_args(['--dense', 'seg']).methods[-1] == 'full'


def test_benchmark_peers_rows(tmp_path, capsys):
    """Each pair gives both sides' figures and their ratios, in the table and the JSON; merged
    LoRA counts only the head as trainable; without peft the LoRA pair says it was skipped."""
    import json
    import importlib.util
    from tools.analysis_tools import benchmark_peers
    out = tmp_path / 'peers.json'
    benchmark_peers.main(['--arch', 'deit-tiny', '--img-size', '32', '--seg-size', '32',
                          '--frames', '2', '--batch-size', '2', '--rounds', '1', '--device',
                          'cpu', '--pairs', 'lora', 'frozen', 'merged', 'video-attn', 'seg-attn',
                          '--out', str(out)])
    rows = {r['pair']: r for r in json.loads(out.read_text())['rows']}
    printed = capsys.readouterr().out
    if importlib.util.find_spec('peft') is None:
        assert 'skipped' in rows['lora'] and 'lora       skipped: HF peft' in printed
    else:  # same parameter count on both sides: 4 r C per block, plus the head
        assert rows['lora']['ours_trainable'] == rows['lora']['ref_trainable']
    head = 192 * 100 + 100
    assert rows['frozen']['ours_trainable'] == rows['merged']['ours_trainable'] == head
    for name in ('frozen', 'merged', 'video-attn', 'seg-attn'):
        row = rows[name]
        assert row['ours_ms'] > 0 and row['ref_ms'] > 0
        assert row['time_ratio'] == pytest.approx(row['ours_ms'] / row['ref_ms'])
        assert row['ours_gflop'] > 0
        assert name in printed
    for name in ('video-attn', 'seg-attn'):  # both sides keep activations for backward
        assert rows[name]['ours_mem_mib'] > 0 and rows[name]['ref_mem_mib'] > 0


def test_benchmark_train_table_images_per_second_and_mfu(capsys):
    """img/s is the batch over the step time; on a GPU whose peak is known the MFU column is
    the step's model FLOPs over the time and that peak (H200: 989 TFLOP/s dense bf16)."""
    from argparse import Namespace
    rows = [dict(method=m, trainable=1, peak_mib=100.0, step_peak_mib=50.0, step_s=s,
                 device='NVIDIA H200', gflop=g) for m, s, g in (('lora', 0.5, 98_900.0),
                                                                ('full', 1.0, 197_800.0))]
    args = Namespace(device='cuda', dense=None, video=False, arch='b', batch_size=8,
                     img_size=224, steps=1, frames=8)
    benchmark_train.print_table(rows, [], args)
    lines = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()[2:]}
    assert lines['lora'][-2:] == ['16.0', '20.0%'] and lines['full'][-2:] == ['8.0', '20.0%']
    assert benchmark_train.gpu_peak_tflops('NVIDIA H100 80GB HBM3') == 989.0
    assert benchmark_train.gpu_peak_tflops('cpu') is None

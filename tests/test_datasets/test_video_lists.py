"""Video data as the video configs read it: mmaction list files and the V-PETL / VideoMAE CSV,
SSv2's .webm, and bad lists caught before a run with the list file and line."""
import os.path as osp

import pytest

pytest.importorskip('mmaction')
pytest.importorskip('av')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import vpetl_mm  # noqa: E402,F401  (registers the plugin)
from tests._video_helpers import write_video  # noqa: E402
from vpetl_mm.engine.data_paths import check_dataset_paths  # noqa: E402


def pipeline(init, decode):
    return [dict(type=init), dict(type='SampleFrames', clip_len=4, frame_interval=2,
                                  num_clips=1, test_mode=True),
            dict(type=decode), dict(type='Resize', scale=(32, 32), keep_ratio=False),
            dict(type='FormatShape', input_format='NCTHW'), dict(type='PackActionInputs')]


DECODERS = [('DecordInit', 'DecordDecode'), ('PyAVInit', 'PyAVDecode')]


@pytest.mark.parametrize('init, decode', DECODERS)
def test_vpetl_csv_list(tmp_path, init, decode):
    """V-PETL's / VideoMAE's CSV (``/full/path.mp4,label``, no header) is read by mmaction's
    VideoDataset with ``delimiter=','`` and an empty video prefix."""
    from mmaction.registry import DATASETS
    lines = []
    for i in range(3):
        write_video(tmp_path / f'{i}.mp4', seed=i)
        lines.append(f'{tmp_path / f"{i}.mp4"},{i + 5}\n')
    (tmp_path / 'train.csv').write_text(''.join(lines))
    init_default_scope('mmaction')
    dataset = DATASETS.build(dict(type='VideoDataset', ann_file=str(tmp_path / 'train.csv'),
                                  delimiter=',', data_prefix=dict(video=''),
                                  pipeline=pipeline(init, decode)))
    assert len(dataset) == 3
    sample = dataset[2]
    assert tuple(sample['inputs'].shape) == (1, 3, 4, 32, 32)
    assert int(sample['data_samples'].gt_label) == 7
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='VideoDataset', ann_file=str(tmp_path / 'train.csv'), delimiter=',',
        data_prefix=dict(video='')))))
    check_dataset_paths(cfg)  # the CSV passes the pre-run check


@pytest.mark.parametrize('init, decode', DECODERS)
def test_ssv2_webm_is_read(tmp_path, init, decode):
    """Something-Something V2 ships VP9 .webm files: both decoders read them as they are."""
    from mmaction.registry import DATASETS
    write_video(tmp_path / '74225.webm', codec='libvpx-vp9')
    (tmp_path / 'list.txt').write_text('74225.webm 140\n')
    init_default_scope('mmaction')
    dataset = DATASETS.build(dict(type='VideoDataset', ann_file=str(tmp_path / 'list.txt'),
                                  data_prefix=dict(video=str(tmp_path)),
                                  pipeline=pipeline(init, decode)))
    sample = dataset[0]
    assert tuple(sample['inputs'].shape) == (1, 3, 4, 32, 32)
    assert int(sample['data_samples'].gt_label) == 140
    # the clip's frames are four different frames of the video (random frames), not frame 0
    # four times: PyAV's WebM header says 0 frames (vpetl_mm.compat counts them)
    frames = sample['inputs'][0].float().transpose(0, 1).flatten(1)
    assert all((frames[i] - frames[j]).abs().mean() > 10 for i in range(4) for j in range(i))
    from mmaction.registry import TRANSFORMS
    results = dict(filename=str(tmp_path / '74225.webm'), start_index=0, modality='RGB')
    for t in pipeline(init, decode)[:2]:
        results = TRANSFORMS.build(t)(results)
    assert results['total_frames'] == 12


def test_bad_video_lists_are_reported_with_file_and_line(tmp_path):
    """Missing, empty and non-video files and malformed lines are all listed, with the config
    key, the list file and the line, before anything is built."""
    videos = tmp_path / 'videos'
    videos.mkdir()
    write_video(videos / 'good.mp4')
    (videos / 'empty.mp4').write_bytes(b'')
    (videos / 'text.mp4').write_text('not a video at all')
    (tmp_path / 'train.txt').write_text(
        'good.mp4 0\n\nmissing.mp4 1\nempty.mp4 2\ntext.mp4 0\ngood.mp4\ngood.mp4 x\n'
        'good.mp4,1\n')
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='VideoDataset', ann_file='train.txt', data_root=str(tmp_path),
        data_prefix=dict(video='videos')))))
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(cfg)
    message = str(err.value)
    where = f'train_dataloader.dataset.ann_file {tmp_path / "train.txt"}'
    assert f'{where}:3: {videos / "missing.mp4"} does not exist' in message
    assert f'{where}:4: {videos / "empty.mp4"} is empty' in message
    assert f'{where}:5: {videos / "text.mp4"} does not start like a video file' in message
    for line in (6, 7, 8):
        assert f'{where}:{line}: ' in message
    assert 'a CSV list needs delimiter=","' in message
    assert f'{where}:1:' not in message  # the good line
    cfg.check_dataset_files = False  # very large folders: the lists are not read
    check_dataset_paths(cfg)


def test_many_problems_are_counted(tmp_path):
    (tmp_path / 'list.txt').write_text(''.join(f'v{i}.mp4 0\n' for i in range(30)))
    cfg = Config(dict(val_dataloader=dict(dataset=dict(
        type='VideoDataset', ann_file=str(tmp_path / 'list.txt'),
        data_prefix=dict(video=str(tmp_path))))))
    with pytest.raises(FileNotFoundError, match=r'\.\.\. and 10 more'):
        check_dataset_paths(cfg)


def test_the_tool_stops_before_training(tmp_path):
    """tools/train.py on a project video config with a broken list stops before building the
    model, naming the line; no work folder is written."""
    import subprocess
    import sys
    from tests.test_tools.test_first_run import ROOT, repo_layout
    work = repo_layout(tmp_path)
    data = work / 'data' / 'hmdb51'
    (data / 'videos').mkdir(parents=True)
    write_video(data / 'videos' / 'a.mp4')
    (data / 'hmdb51_train_split_1_videos.txt').write_text('a.mp4 0\nb.mp4 1\n')
    (data / 'hmdb51_val_split_1_videos.txt').write_text('a.mp4 0\n')
    proc = subprocess.run([sys.executable, 'tools/train.py',
                           'configs/video/videomae-vit-b_lora_hmdb51.py'], cwd=work,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert ('hmdb51_train_split_1_videos.txt:2: ' + osp.join(
        'data/hmdb51/videos', 'b.mp4') + ' does not exist') in proc.stderr, proc.stderr[-2000:]
    assert not (work / 'work_dirs').exists()
    assert osp.isdir(ROOT)

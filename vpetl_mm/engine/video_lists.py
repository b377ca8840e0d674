"""Check an MMAction2 ``VideoDataset`` list file before a run: every line parses and names a
non-empty file that starts like a video container.

A missing, empty or non-video file otherwise fails in a dataloader worker in the middle of an
epoch (or, for a missing validation video, after the whole training schedule) with the
decoder's message and no hint of which list line named it. Only headers are read (a few bytes
per file); a container whose streams are damaged past its header still fails at decoding.
"""
import os.path as osp
from typing import List, Optional

# leading bytes of the containers video datasets use (offset, signature)
SIGNATURES = (
    (4, b'ftyp'), (4, b'moov'), (4, b'mdat'), (4, b'free'), (4, b'wide'),  # mp4 / mov / 3gp
    (0, b'\x1a\x45\xdf\xa3'),  # matroska / webm
    (0, b'RIFF'),  # avi
    (0, b'FLV'), (0, b'\x00\x00\x01\xba'), (0, b'\x00\x00\x01\xb3'),  # flv, mpeg-ps / -es
    (0, b'OggS'), (0, b'\x47'),  # ogg, mpeg-ts
)
SHOWN = 20  # problems listed in full; the rest are counted


def looks_like_video(path: str) -> bool:
    with open(path, 'rb') as f:
        head = f.read(12)
    return any(head[offset:offset + len(sig)] == sig for offset, sig in SIGNATURES)


def video_list_problems(key: str, dataset: dict, data_root: Optional[str]) -> List[str]:
    """Problems of the list file of a ``VideoDataset`` config, each with ``list:line``.

    ``dataset`` is the config (``ann_file``, ``data_prefix['video']``, ``delimiter``,
    ``multi_class``); relative paths resolve against ``data_root`` as mmengine resolves them.
    A missing list file is reported elsewhere (``check_dataset_paths``).
    """
    ann_file = dataset.get('ann_file')
    prefix = (dataset.get('data_prefix') or {}).get('video', '') or ''
    if data_root:
        ann_file = ann_file if osp.isabs(ann_file) else osp.join(data_root, ann_file)
        prefix = prefix if osp.isabs(prefix) else osp.join(data_root, prefix)
    if not ann_file or not osp.isfile(ann_file) or not ann_file.endswith(('.txt', '.csv')):
        return []  # json lists (other dataset classes) and missing files: not ours
    delimiter = dataset.get('delimiter', ' ')
    problems = []
    with open(ann_file) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f'{key}.ann_file {ann_file}:{number}'
            fields = line.strip().split(delimiter)
            try:
                if len(fields) < 2:
                    raise ValueError
                [int(x) for x in fields[1:]]
                if len(fields) > 2 and not dataset.get('multi_class', False):
                    raise ValueError
            except ValueError:
                problems.append(f'{where}: {line.strip()!r} is not "<video>{delimiter}<label>" '
                                f'(delimiter={delimiter!r}; a CSV list needs delimiter=",")')
                continue
            path = osp.join(prefix, fields[0])
            if not osp.isfile(path):
                problems.append(f'{where}: {path} does not exist')
            elif osp.getsize(path) == 0:
                problems.append(f'{where}: {path} is empty')
            elif not looks_like_video(path):
                problems.append(f'{where}: {path} does not start like a video file '
                                '(mp4 / webm / avi / ...): corrupt or not a video')
    return problems


def summarise(problems: List[str]) -> List[str]:
    """At most :data:`SHOWN` problems, then how many more there are."""
    if len(problems) <= SHOWN:
        return problems
    return problems[:SHOWN] + [f'... and {len(problems) - SHOWN} more']

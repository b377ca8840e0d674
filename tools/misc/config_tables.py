"""The command line the config generators share (``gen_video_configs.py``,
``gen_dense_configs.py``): write a folder of configs from tables, or ``--check`` it."""
import argparse
import glob
import os
import os.path as osp
from typing import Dict, Optional, Sequence


def sync_configs(configs: Dict[str, str], out: str, description: str,
                 argv: Optional[Sequence[str]] = None) -> int:
    """Make the ``*.py`` files of ``out`` exactly ``configs`` (file name -> text): write the
    missing or different ones, remove the others. With ``--check`` in ``argv``, change
    nothing and return 1 (after naming each file) when the folder differs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if a committed config differs from the tables')
    args = parser.parse_args(argv)
    folder = osp.relpath(out, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    committed = {osp.basename(p) for p in glob.glob(osp.join(out, '*.py'))}
    stale = sorted(n for n, text in configs.items() if _read(osp.join(out, n)) != text)
    extra = sorted(committed - set(configs))
    if args.check:
        for name in stale:
            print(f'{folder}/{name} differs from the tables (or is missing)')
        for name in extra:
            print(f'{folder}/{name} is not produced by the tables')
        return 1 if stale or extra else 0
    os.makedirs(out, exist_ok=True)
    for name in stale:
        with open(osp.join(out, name), 'w') as f:
            f.write(configs[name])
    for name in extra:
        os.remove(osp.join(out, name))
    print(f'{folder}: {len(stale)} written, {len(extra)} removed, {len(configs)} in all')
    return 0


def _read(path: str) -> Optional[str]:
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read()

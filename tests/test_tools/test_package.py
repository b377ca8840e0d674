"""vpetl_mm installed from a wheel, as an OpenMMLab package: its configs and tools ship under
``vpetl_mm/.mim/``, a user's config inherits ``vpetl_mm::vtab/...`` and the packaged
``tools/train.py`` (what ``mim train vpetl_mm CONFIG`` runs) trains it, away from the checkout."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.test_tools.test_first_run import (ROOT, SIZE_ONLY, TINY_BACKBONE, run, top1,
                                             write_pretrained, write_vtab)

pytest.importorskip('mmpretrain')

USER_CONFIG = """_base_ = ['vpetl_mm::vtab/vit-b_lora_cifar100.py']
train_cfg = dict(max_epochs=2, val_interval=2)
"""


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """vpetl_mm built into a wheel in a temporary folder and installed into another."""
    tmp = tmp_path_factory.mktemp('package')
    source = tmp / 'source'  # a copy: building writes build/ and egg-info next to setup.py
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        '.git', '.venv', 'work_dirs', 'data', 'pretrained', 'build', '*.egg-info',
        '__pycache__', '.pytest_cache'))
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp / 'wheel'), str(source)], cwd=tmp, check=True,
                   timeout=600)
    wheel = next((tmp / 'wheel').glob('vpetl_mm-*.whl'))
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target',
                    str(tmp / 'site'), str(wheel)], cwd=tmp, check=True, timeout=600)
    return wheel, tmp / 'site'


def test_wheel_ships_configs_and_tools(installed):
    wheel, site = installed
    names = zipfile.ZipFile(wheel).namelist()
    configs = [n for n in names if n.startswith('vpetl_mm/.mim/configs/')]
    ours = [osp.relpath(osp.join(d, f), ROOT) for d, _, fs in os.walk(osp.join(ROOT, 'configs'))
            for f in fs if f.endswith('.py')]
    assert sorted(c[len('vpetl_mm/.mim/'):] for c in configs) == sorted(ours)
    for tool in ('train.py', 'test.py', 'dist_train.sh', 'dist_test.sh'):
        assert f'vpetl_mm/.mim/tools/{tool}' in names, tool
    assert not any(n.startswith(('tests/', 'vpetl_mm/.mim/tests')) for n in names)
    assert (site / 'vpetl_mm' / '.mim' / 'configs' / '_base_' / 'peft' / 'lora.py').is_file()


def test_installed_package_trains_a_config_inheriting_its_configs(installed, tmp_path):
    """From a folder that is not the checkout: a config with ``_base_ = ['vpetl_mm::...']``
    trains through the packaged tools/train.py, the installed vpetl_mm doing the work."""
    _, site = installed
    work = tmp_path / 'project'
    write_vtab(work / 'data' / 'vtab-1k' / 'cifar')
    write_pretrained(str(work / 'pretrained' / 'vit-b16_in21k.pth'), **TINY_BACKBONE)
    (work / 'my_lora.py').write_text(USER_CONFIG)
    train = site / 'vpetl_mm' / '.mim' / 'tools' / 'train.py'
    env_site = f'PYTHONPATH={site}'
    out = run(['env', env_site, sys.executable, '-c',
               'import vpetl_mm, sys; print("vpetl_mm from", vpetl_mm.__file__)'], cwd=work)
    assert f'vpetl_mm from {site}' in out
    size = [o for o in SIZE_ONLY if not o.startswith('train_cfg.')]
    out = run(['env', env_site, sys.executable, str(train), 'my_lora.py',
               '--cfg-options', *size], cwd=work)
    assert 'Trainable parameters' in out
    assert (work / 'work_dirs' / 'my_lora' / 'epoch_2.pth').is_file()
    assert top1(out, 'val') >= 0

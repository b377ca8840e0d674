"""The README, followed as a user follows it: every fenced code block is executed or checked.

README.md and the ``docs/`` pages it links are read from disk when the tests run
(``VPETL_README`` names another copy of README.md; its links are read next to it). ``CHECKS``
maps each block, by its fence language and a pattern of its first line, to how it is checked:

- commands run as the README writes them (same script, positional arguments and options), from
  a working directory laid out like the repository (``repo_layout``), only with ``--cfg-options``
  appended that shrink model, data and epochs (or a benchmark's sizes), and with placeholders
  (``CONFIG``, ``CKPT``, ``DIR``, ``work_dirs/.../x.pth``, ``[optional ...]``) filled in; release
  files a command reads (``ViT-B_16.npz``, ...) are tiny fakes in the release's format, written
  by the converter tests' helpers;
- Python blocks are executed (the Python API example through ``tests/test_engine/test_api.py``)
  or, for configs, loaded with mmengine's ``Config`` and built with a tiny backbone;
- listings (a work folder, the data layout) are compared with what a run wrote / what
  ``VTAB1k`` reads; commands too heavy to run (mutmut) are checked against their parsers.

A README block no entry covers, or an entry no block matches, fails
``test_every_readme_block_has_one_check``: a new README command needs a check here.
"""
import argparse
import glob
import importlib
import inspect
import json
import os
import os.path as osp
import pickle
import re
import shlex
import subprocess
import sys
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402

from tests._video_helpers import write_video  # noqa: E402
from tests.test_tools import test_first_run  # noqa: E402
from tests.test_tools.test_first_run import (SIZE_ONLY, TINY_BACKBONE, repo_layout,  # noqa: E402
                                             run, top1, write_pretrained, write_vtab)

ROOT = test_first_run.ROOT
README = os.environ.get('VPETL_README', osp.join(ROOT, 'README.md'))

# id: (fence language, pattern the block's first line starts with, how the block is checked)
CHECKS = {
    'quick-start': ('bash', r'bash tools/demo\.sh(\s|$)',
                    'demo.sh run shrunk (its README options checked against the parser); '
                    'run_tests.sh: bash -n and .ci/run runs it'),
    'first-run': ('bash', r'source \S+/activate$',
                  'venv path; train.py runs (its epochs from the config); test.py and '
                  'dist_train.sh as written: run by test_first_run (checked by name)'),
    'work-dir-listing': ('', r'work_dirs/\S+/$', 'matches the folder the first-run train wrote'),
    'peft-config': ('python', r'custom_imports = ',
                    'Config from a file, built with a tiny backbone and its pretrained file'),
    'zoo-config': ('python', r"_base_ = \['mmpretrain::",
                   'Config from a file (zoo base), built with a tiny backbone'),
    'python-api': ('python', r'import torch$',
                   'exec through tests/test_engine/test_api.py (the example as written)'),
    'peft-sets': ('python', r'peft = model\.backbone\.peft',
                  'exec on a tiny LoRA classifier: the disabled logits are the plain backbone\'s, '
                  'the set switch keeps each set\'s outputs, detach leaves the plain backbone'),
    'vtab-layout': ('', r'data/vtab-1k/<folder>/', 'the layout VTAB1k and the configs read'),
    'vtab-val200-child': ('python', r"_base_ = \['\./",
                          'a child config next to its base trains; the best checkpoint '
                          'the text names exists'),
    'vit-converter': ('bash', r'python tools/model_converters/vit2mmpretrain\.py \S+\.npz ',
                      'run on fake releases; the output loads into mmpretrain'),
    'clip-converter': ('bash', r'python tools/model_converters/vit2mmpretrain\.py \S+\.pt ',
                       'run on fake TorchScript releases, then the CLIP config trains on one'),
    'swin-converter': ('bash', r'python tools/model_converters/swin2mmpretrain\.py ',
                       'run on a fake official release; the output loads into mmpretrain'),
    'videomae-converter': ('bash', r'python tools/model_converters/videomae2mmaction\.py ',
                           'run on a fake VideoMAE pretrain; it loads through PEFTBackbone'),
    'train-work-dir': ('bash', r'python tools/train\.py \S+ --work-dir ',
                       'run shrunk; the checkpoint lands in --work-dir'),
    'train-test-usage': ('bash', r'python tools/train\.py \S+ \[',
                         'every option form parses; test.py and dist_test.sh run; train.py with '
                         '--work-dir is train-work-dir; --resume, --amp, --compile, '
                         '--tensorboard, dist_train.sh: by name'),
    'merge-peft': ('bash', r'python tools/model_converters/merge_peft\.py ',
                   'run on a trained LoRA checkpoint; loads strictly into the plain model'),
    'dense-tools': ('bash', r'python tools/train\.py configs/dense/',
                    'every command parses, its configs exist, test.py names the checkpoint the '
                    'full schedule ends with; the runs: test_dense_config_sweep (checked by '
                    'name)'),
    'video-tools': ('bash', r'python tools/train\.py configs/video/',
                    'train.py runs shrunk (test_video_tools helpers); test.py, dist_train.sh: '
                    'run by test_video_tools (checked by name)'),
    'video-csv-list': ('python', r"train_dataloader = dict\(dataset=dict\(ann_file=",
                       'merged into the video config: a CSV list passes the pre-run check and '
                       'VideoDataset reads it'),
    'video-demo': ('bash', r'python tools/demo/video_demo\.py',
                   'every option it names is in the parser; the run itself: '
                   'tests/test_demo/test_video_demo.py (checked by name)'),
    'dense-demo': ('bash', r'python tools/demo/dense_demo\.py',
                   'every option it names is in the parser; the run itself: '
                   'tests/test_demo/test_dense_demo.py (checked by name)'),
    'benchmark-train': ('bash', r'python tools/analysis_tools/benchmark_train\.py ',
                        'run with --batch-size 2 --steps 1 --img-size 32 --arch deit-tiny'),
    'benchmark-peers': ('bash', r'python tools/analysis_tools/benchmark_peers\.py ',
                        'every option as written, run at --arch deit-tiny --img-size 32 '
                        '--seg-size 32 --frames 2 --batch-size 2 --rounds 1'),
    'benchmark-dyt': ('bash', r'python tools/analysis_tools/benchmark_dyt\.py ',
                      'run with --batch-size 2 --iters 1 --img-size 32 --arch deit-tiny'),
    'mutation-check': ('bash', r'\S+/bin/python tools/misc/mutation_check\.py ',
                       'not run (mutmut): parser, file stems and their formula tests'),
}
ONE_EPOCH = [*SIZE_ONLY, 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1']
RAN_EPOCHS = int(dict(o.split('=', 1) for o in SIZE_ONLY)['train_cfg.max_epochs'])
FENCE = re.compile(r'^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$', re.M | re.S)


# ---------------------------------------------------------------------------------------------
# reading the README
# ---------------------------------------------------------------------------------------------

class Block(SimpleNamespace):
    """A fenced code block: ``lang``, ``body``, ``page`` (README.md or a docs page it links),
    ``line`` (1-based, in the page), ``section`` (its # or ## heading), ``after`` (the page's
    text from the block's end)."""

    @property
    def first(self):
        return next((ln.strip() for ln in self.body.splitlines() if ln.strip()), '')

    def __str__(self):
        return f'{self.page} block at line {self.line} ({self.section}): {self.first!r}'


def readme_pages():
    """README.md and the pages of ``docs/`` it links, in link order: what a user reads (the
    generated ``docs/methods.md`` has no code block)."""
    with open(README, encoding='utf-8') as f:
        text = f.read()
    linked = dict.fromkeys(re.findall(r'\]\((docs/[\w.-]+\.md)\)', text))
    return [README] + [osp.join(osp.dirname(README), page) for page in linked]


def page_text(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def readme_text():
    """Every page of :func:`readme_pages`, one after the other."""
    return '\n'.join(page_text(p) for p in readme_pages())


def readme_blocks():
    blocks = []
    for path in readme_pages():
        text = page_text(path)
        for m in FENCE.finditer(text):
            headings = re.findall(r'^##? (.+)$', text[:m.start()], re.M)
            blocks.append(Block(lang=m.group(1), body=m.group(2), after=text[m.end():],
                                page=osp.relpath(path, ROOT),
                                line=text.count('\n', 0, m.start()) + 1,
                                section=headings[-1] if headings else ''))
    return blocks


def covers(check_id, block):
    lang, pattern, _ = CHECKS[check_id]
    return re.fullmatch(lang, block.lang) is not None and re.match(pattern, block.first)


def find_block(check_id):
    found = [b for b in readme_blocks() if covers(check_id, b)]
    assert len(found) == 1, (f'CHECKS[{check_id!r}] matches {len(found)} README blocks '
                             f'(expected one): {[str(b) for b in found]}')
    return found[0]


def section(text, title_word):
    """The text of the first ``#`` or ``## `` section whose title contains ``title_word``."""
    parts = re.split(r'^##? ', text, flags=re.M)
    return next((p for p in parts[1:] if title_word.lower() in p.split('\n', 1)[0].lower()), '')


def inline_spans(text):
    """Inline code spans of README prose (fenced blocks left out); they may wrap lines."""
    return [' '.join(s.split()) for s in re.findall(r'`([^`]+)`', FENCE.sub('', text))]


def commands(block):
    """(argv, comment) per command line of a shell block: continuations joined, a comment-only
    line added to the command before it."""
    cmds = []
    for line in re.sub(r'\\\n', ' ', block.body).splitlines():
        code, _, comment = line.partition('#')
        if code.strip():
            cmds.append((shlex.split(code), comment))
        elif comment.strip() and cmds:
            cmds[-1] = (cmds[-1][0], cmds[-1][1] + ' ' + comment)
    return cmds


def by_head(block, *heads):
    """The block's commands grouped by the head (first words) each starts with: a command no
    head covers, or a head no command has, fails (a new README command needs a check)."""
    found = {head: [] for head in heads}
    unknown = []
    for argv, comment in commands(block):
        head = next((h for h in heads if argv[:len(h.split())] == h.split()), None)
        if head is None:
            unknown.append(' '.join(argv))
        else:
            found[head].append((argv, comment))
    assert not unknown, f'{block}: no check for the command(s) {unknown}; add one to this test'
    missing = [h for h, cmds in found.items() if not cmds]
    assert not missing, f'{block}: the check expects commands starting {missing}'
    return found


def select(block, head):
    """The commands of ``block`` that start with ``head`` (the others are left alone)."""
    return {head: [(a, c) for a, c in commands(block) if a[:len(head.split())] == head.split()]}


def one(found, head):
    assert len(found[head]) == 1, f'one {head!r} command expected, got {found[head]}'
    return found[head][0][0]


def usage(argv):
    """README usage notation: (required tokens, optional groups); a group is the token list
    inside one outer ``[...]`` (nested ``[CKPT]`` and ``a | b`` alternatives kept)."""
    required, groups, depth = [], [], 0
    for tok in argv:
        opens = len(tok) - len(tok.lstrip('['))
        if depth == 0 and not opens:
            required.append(tok)
            continue
        if depth == 0:
            groups.append([])
        depth += opens - (len(tok) - len(tok.rstrip(']')))
        groups[-1].append(tok)
    assert depth == 0, f'unbalanced [ ] in {argv}'
    for group in groups:  # the outer brackets
        group[0] = group[0][1:]
        group[-1] = group[-1][:-1]
    return required, groups


def alternatives(group):
    alts, cur = [], []
    for tok in group + ['|']:
        if tok == '|':
            alts.append(cur)
            cur = []
        else:
            cur.append(tok)
    return alts


def fill(tokens, values, nested=True):
    """Tokens with placeholders replaced: CONFIG, CKPT (also ``work_dirs/.../x.pth``), DIR,
    ``key=value ...``, ``options``; a nested optional ``[X]`` is kept (filled) when ``nested``."""
    out = []
    for tok in tokens:
        optional = tok.startswith('[') and tok.endswith(']')
        name = tok[1:-1] if optional else tok
        if optional and not nested:
            continue
        if '/.../' in name:
            name = 'CKPT'
        if name in values:
            out += list(values[name])
        elif re.fullmatch(r'[A-Z][A-Z_]+|\.\.\.|options|\w+=\w+', name):
            raise AssertionError(f'the test has no value for the README placeholder {name!r}')
        else:
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# tools, files
# ---------------------------------------------------------------------------------------------

def tool(script):
    """The module of a script under tools/ (a package)."""
    return importlib.import_module(script[:-3].replace('/', '.'))


def parser_of(script):
    """The argparse parser of a tools/ script (its ``build_parser``, or the one its
    ``parse_args`` builds)."""
    if hasattr(tool(script), 'build_parser'):
        return tool(script).build_parser()
    with mock.patch.object(argparse.ArgumentParser, 'parse_args', lambda self, *a, **k: self):
        return tool(script).parse_args([])


def parses(script, argv):
    try:
        return tool(script).parse_args(argv)
    except SystemExit:
        pytest.fail(f'{script} does not accept the README arguments {argv}')


def bash_n(script):
    assert osp.isfile(osp.join(ROOT, script)), f'{script} does not exist'
    proc = subprocess.run(['bash', '-n', script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f'bash -n {script}: {proc.stderr}'


def check_venv_path(path):
    """``.venv/bin/...`` in a README command is the venv tools/setup_env.sh creates."""
    bash_n('tools/setup_env.sh')
    with open(osp.join(ROOT, 'tools', 'setup_env.sh')) as f:
        venv = re.search(r'VENV=\$\{VPETL_VENV:-\$ROOT/([^}]+)\}', f.read()).group(1)
    assert path.startswith(f'{venv}/bin/'), f'{path}: setup_env.sh creates {venv}/'
    if osp.realpath(sys.prefix) == osp.realpath(osp.join(ROOT, venv)):
        assert osp.exists(osp.join(ROOT, path)), f'{path} does not exist'


def pretrained_paths():
    """Every ``pretrained=`` path the shipped model configs name."""
    paths = set()
    for name in (glob.glob(osp.join(ROOT, 'configs', '_base_', 'models', '*.py')) +
                 glob.glob(osp.join(ROOT, 'configs', '_base_', 'dense', '*.py'))):
        with open(name) as f:
            paths |= set(re.findall(r"pretrained='([^']+)'", f.read()))
    return paths


def config_with(path, options):
    """A config as a tool builds it with ``--cfg-options *options``."""
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(parser.parse_args(['--cfg-options', *options]).cfg_options)
    return cfg


def stem(path):
    return osp.splitext(osp.basename(path))[0]


def state_dict(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def build_classifier(cfg, cwd, monkeypatch):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    monkeypatch.chdir(cwd)  # configs name weights relative to the repository root
    return MODELS.build(cfg.model)


def checkout(tmp_path):
    """``repo_layout`` plus ``vpetl_mm/``, as a checkout has it (the converter scripts load
    their converters from the checkout's files, without importing the package)."""
    work = repo_layout(tmp_path)
    os.symlink(osp.join(ROOT, 'vpetl_mm'), work / 'vpetl_mm')
    return work


def configs_dir_copy(work, sub):
    """Make ``work/configs`` (a link in repo_layout) a folder of links, with ``sub`` a real
    folder of links too, so a new config can sit next to the shipped ones."""
    os.unlink(work / 'configs')
    for name in os.listdir(osp.join(ROOT, 'configs')):
        src = osp.join(ROOT, 'configs', name)
        if name == sub:
            os.makedirs(work / 'configs' / name)
            for f in os.listdir(src):
                os.symlink(osp.join(src, f), work / 'configs' / name / f)
        else:
            os.makedirs(work / 'configs', exist_ok=True)
            os.symlink(src, work / 'configs' / name)


# tiny fakes of the release files README commands read, in each release's own format; each
# returns a check that the converted file loads into the matching backbone

def fake_google_vit_npz(path):
    from tests.test_converters import test_vit_converters as vit
    vit.save_npz(path, vit.write_google_layout(vit.make_timm_vit()))
    return lambda dst: vit.build_mmpretrain_vit(state_dict(dst))


def fake_timm_vit_pth(path):
    from tests.test_converters import test_vit_converters as vit
    torch.save(vit.make_timm_vit().state_dict(), path)  # timm's release: a flat state dict
    return lambda dst: vit.build_mmpretrain_vit(state_dict(dst))


def fake_videomae_pretrain(path):
    """VideoMAE's self-supervised release (``encoder.*`` + decoder, under ``model``)."""
    from tests.test_converters import test_video_converters as video
    torch.save({'model': video.pretrain_checkpoint()}, path)
    return lambda dst: video._peft_backbone(str(dst))  # a 4-frame backbone, strict


def fake_openai_clip_jit(path):
    import copy
    from tests.test_converters import test_clip_converter as clip
    torch.jit.save(torch.jit.script(clip._Holder(clip.openai_state_dict())), str(path))

    def load(dst):
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import MODELS
        init_default_scope('mmpretrain')
        model = MODELS.build(copy.deepcopy(clip.MMPRETRAIN_CLIP))
        model.load_state_dict(state_dict(dst), strict=True)
    return load


def fake_official_swin(path):
    from tests.test_converters import test_swin_converter as swin
    torch.save({'model': swin.official_layout(swin.tiny_timm_swin(), swin.mm_swin())}, path)
    return lambda dst: swin.mm_swin().load_state_dict(state_dict(dst), strict=True)


RELEASES = {
    'ViT-B_16.npz': fake_google_vit_npz,
    'jx_vit_base_patch16_224_in21k-e5005f0a.pth': fake_timm_vit_pth,
    'ViT-B-32.pt': fake_openai_clip_jit,
    'ViT-B-16.pt': fake_openai_clip_jit,
    'swin_base_patch4_window7_224_22k.pth': fake_official_swin,
    'swin_large_patch4_window7_224_22k.pth': fake_official_swin,  # the same tiny fake
    'checkpoint.pth': fake_videomae_pretrain,  # "a VideoMAE checkpoint"
}
# the tiny CLIP tower of test_clip_converter, as command-line options of a CLIP config
TINY_CLIP = [
    'model.backbone.backbone.arch._delete_=True', 'model.backbone.backbone.arch.embed_dims=32',
    'model.backbone.backbone.arch.num_layers=2', 'model.backbone.backbone.arch.num_heads=2',
    'model.backbone.backbone.arch.feedforward_channels=128', 'model.head.in_channels=32',
    'model.backbone.backbone.img_size=32', 'model.backbone.backbone.patch_size=8',
    *[o for o in ONE_EPOCH if not o.startswith('model.')],
]


def convert_releases(found, head, work):
    """Run each converter command as written on a fake of the release it names; the output
    must be a path the shipped configs read and load into the backbone."""
    outputs = []
    for argv, _ in found[head]:
        src, dst = argv[2:4]
        assert src in RELEASES, f'{" ".join(argv)}: no fake for the release file {src}'
        load = RELEASES[src](work / src)
        out = run(argv, cwd=work)
        assert dst in pretrained_paths(), f'{dst}: no shipped config reads it'
        load(work / dst)
        outputs.append((dst, out))
    return outputs


# ---------------------------------------------------------------------------------------------
# shared runs
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def repo(tmp_path_factory):
    """The repository layout with a VTAB-1K folder and a tiny 'ViT-B/16' checkpoint."""
    work = checkout(tmp_path_factory.mktemp('readme'))
    write_vtab(work / 'data' / 'vtab-1k' / 'cifar')
    write_pretrained(str(work / 'pretrained' / 'vit-b16_in21k.pth'), **TINY_BACKBONE)
    return work


@pytest.fixture(scope='module')
def first_run_train(repo):
    """The first-run block's tools/train.py command, shrunk."""
    argv = one(select(find_block('first-run'), 'python tools/train.py'),
               'python tools/train.py')
    return argv, run(argv + ['--cfg-options', *SIZE_ONLY], cwd=repo)


@pytest.fixture(scope='module')
def lora_train(repo):
    """The train-work-dir block's command, shrunk to one epoch: (argv, checkpoint)."""
    argv = one(select(find_block('train-work-dir'), 'python tools/train.py'),
               'python tools/train.py')
    run(argv + ['--cfg-options', *ONE_EPOCH], cwd=repo)
    return argv, repo / argv[argv.index('--work-dir') + 1] / 'epoch_1.pth'


# ---------------------------------------------------------------------------------------------
# the checks, one per CHECKS entry: check_<id>(block, ctx)
# ---------------------------------------------------------------------------------------------

def demo_mentions(comment):
    """What the README says about the demo's command line: the demo command's comment, inline
    spans naming demo.sh / digits_demo.py, option spans of the digits demo section."""
    text = readme_text()
    spans = [s for s in inline_spans(text) if 'demo.sh' in s or 'digits_demo.py' in s]
    spans += [s for s in inline_spans(section(text, 'digits demo')) if s.startswith('--')]
    return [comment] + spans


def demo_methods_exist(demo, names, where):
    """The demo takes these ``--methods`` names (its own check where it has one, else a
    config per name)."""
    if not names:
        return
    if hasattr(demo, 'check_args'):
        parser = demo.build_parser()
        try:
            demo.check_args(parser, parser.parse_args(['--methods', *names]))
        except SystemExit:
            pytest.fail(f'{where}: the demo refuses --methods {" ".join(names)}')
    else:
        for name in names:
            assert osp.isfile(demo.CONFIG.format(name)), f'{where}: no demo config for {name}'


def check_quick_start(block, ctx):
    found = by_head(block, 'bash tools/demo.sh', 'bash tools/run_tests.sh')
    for argv, _ in found['bash tools/run_tests.sh']:
        bash_n(argv[1])
        with open(osp.join(ROOT, '.ci', 'run')) as f:
            assert ' '.join(argv) in f.read(), '.ci/run does not run ' + ' '.join(argv)
    script = 'tools/demo/digits_demo.py'
    demo = tool(script)
    options = set(parser_of(script)._option_string_actions)
    for argv, comment in found['bash tools/demo.sh']:
        bash_n(argv[1])
        for text in demo_mentions(comment):
            for option in re.findall(r'(?<![\w-])--[a-z][a-z0-9-]*', text):
                assert option in options, f'README: {text!r}: {script} has no {option}'
            for names in re.findall(r'--methods((?:\s+[a-z0-9+-]+)+)', text):
                demo_methods_exist(demo, names.split(), f'README: {text!r}')
        rows = re.findall(r'^\| ([a-z0-9][a-z0-9+-]*)[^|]*\|',
                          section(readme_text(), 'digits demo'), re.M)
        demo_methods_exist(demo, [n for n in rows if n != 'method'], 'the demo table')
        parses(script, argv[2:])
        # the user's command, shortened; setup_env.sh must find this environment complete
        ctx.monkeypatch.setenv('VPETL_VENV', sys.prefix)
        ctx.monkeypatch.setenv('PIP_NO_INDEX', '1')
        out = run(argv + ['--methods', 'linear', 'lora', '--epochs', '1', '--source-epochs', '1',
                          '--work-dir', str(ctx.tmp_path / 'work'),
                          '--data-root', str(ctx.tmp_path / 'data')], cwd=ROOT)
        table = re.findall(r'^\|? ?(linear|lora)\s.*?\d', out, re.M)  # the result rows
        assert set(table) == {'linear', 'lora'}, out[-3000:]


def run_by(test, argv, expected, snippet):
    """A README command that ``test`` (another test file) already runs as written: the
    command's required words start with ``expected`` and the test's source holds ``snippet``
    (its own call). Keeps this file from launching the same command twice."""
    required, _ = usage(argv)
    name = f'{test.__module__}.{test.__name__}'
    assert required[:len(expected)] == expected, f'{argv}: {name} runs {expected}'
    assert snippet in inspect.getsource(test), f'{name} no longer runs {snippet}'


def mapped_to_first_run_dist_test(argv):
    """``bash tools/dist_train.sh CONFIG 2``: run (two processes) by test_first_run's test."""
    assert len(usage(argv)[0]) == 4, argv
    run_by(test_first_run.test_dist_train_then_test_from_repository_root, argv,
           ['bash', 'tools/dist_train.sh', test_first_run.DTL_CFG, '2'],
           "['bash', 'tools/dist_train.sh', DTL_CFG, '2'")


def check_first_run(block, ctx):
    found = by_head(block, 'source', 'python tools/train.py', 'bash tools/dist_train.sh',
                    'python tools/test.py')
    check_venv_path(one(found, 'source')[1])
    for argv, _ in found['bash tools/dist_train.sh']:
        mapped_to_first_run_dist_test(argv)
    train, out = ctx.request.getfixturevalue('first_run_train')
    cfg = Config.fromfile(osp.join(ROOT, train[2]))
    assert 'Trainable parameters:' in out
    vals = re.findall(r'Epoch\(val\) \[(\d+)\].*accuracy/top1', out)
    assert vals == [str(RAN_EPOCHS)], f'one val after the last epoch expected: {vals}'
    test = one(found, 'python tools/test.py')
    assert test[2] == train[2], 'the README tests another config than it trained'
    # a full run ends at the config's max_epochs and validates once, after it
    folder = final_checkpoint(test[3], train[2])
    assert cfg.train_cfg.val_interval == cfg.train_cfg.max_epochs
    assert folder == f'work_dirs/{stem(train[2])}' and not test[4:], test
    # tools/test.py on this config's checkpoint, giving the val top-1 again: run there
    run_by(test_first_run.test_train_then_test_from_repository_root, test,
           ['python', 'tools/test.py', test_first_run.DTL_CFG], "'tools/test.py', DTL_CFG")


def check_work_dir_listing(block, ctx):
    lines = [ln.split('#')[0].rstrip() for ln in block.body.splitlines() if ln.strip()]
    comments = {ln.split('#')[0].strip(): ln.partition('#')[2] for ln in block.body.splitlines()}
    train, _ = ctx.request.getfixturevalue('first_run_train')
    work_dir = ctx.repo / lines[0].strip()
    assert lines[0].strip() == f'work_dirs/{stem(train[2])}/', 'not the first run\'s folder'
    actual = [n + '/' if (work_dir / n).is_dir() else n for n in os.listdir(work_dir)]
    listed = [ln.strip() for ln in lines[1:]]
    patterns = {n: re.sub(r'\d+', r'\\d+', re.escape(n)) for n in listed}
    for name, pattern in patterns.items():
        hits = [a for a in actual if re.fullmatch(pattern, a)]
        assert hits, f'listed {name!r}; the run wrote {actual}'
        path = work_dir / hits[0]
        if name.endswith('.pth'):  # trainable weights + optimizer state
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
            assert 'optimizer' in ckpt
            frozen = [k for k in ckpt['state_dict'] if k.startswith('backbone.layers.')
                      and 'peft' not in k]
            assert not frozen, f'frozen weights in the checkpoint: {frozen[:4]}'
        elif name == 'last_checkpoint':
            assert path.read_text().strip().endswith(f'epoch_{RAN_EPOCHS}.pth')
        elif name.endswith('/') and 'log' in comments[name]:
            assert list(path.glob('*.log')), f'no .log in {path}'
            assert list(path.glob('vis_data/*.json')), f'no vis_data/*.json in {path}'
        elif name.endswith('.py'):
            assert Config.fromfile(str(path)).train_cfg.max_epochs == RAN_EPOCHS  # as it ran
    unlisted = [a for a in actual if not any(re.fullmatch(p, a) for p in patterns.values())]
    assert not unlisted, f'the run wrote {unlisted}, which the listing does not show'


def tiny_build_and_check(block, ctx, options, x):
    """Load a config block from a file in the repository layout, shrink it with
    ``options``, write its pretrained file, build, and check frozen / trainable / forward."""
    work = checkout(ctx.tmp_path)
    path = work / 'readme_config.py'
    path.write_text(block.body)
    cfg = Config.fromfile(str(path))
    cfg.merge_from_dict(options)
    inner = cfg.model.backbone.backbone
    pretrained = cfg.model.backbone.pretrained
    write_pretrained(str(work / pretrained),
                     **{k: inner[k] for k in ('arch', 'img_size', 'patch_size') if k in inner})
    model = build_classifier(cfg, work, ctx.monkeypatch)
    weights = state_dict(work / pretrained)
    params = dict(model.backbone.named_parameters())
    for key, value in weights.items():
        if key in params:
            assert torch.equal(params[key], value), f'{key} is not the pretrained weight'
            assert not params[key].requires_grad, f'{key} is not frozen'
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert trainable and any(not k.startswith('head.') for k in trainable), trainable
    assert all(k.startswith('head.') or k[len('backbone.'):] not in weights for k in trainable)
    model.eval()
    with torch.no_grad():
        assert model(x, mode='tensor').shape == (len(x), cfg.model.head.num_classes)
    return cfg


def check_peft_config(block, ctx):
    options = {f'model.backbone.backbone.{k}': v for k, v in TINY_BACKBONE.items()}
    options['model.head.in_channels'] = 192
    tiny_build_and_check(block, ctx, options, torch.randn(2, 3, 32, 32))


def check_zoo_config(block, ctx):
    options = {'model.backbone.backbone.arch': 'deit-tiny', 'model.backbone.backbone.img_size': 32,
               'model.head.in_channels': 192}
    cfg = tiny_build_and_check(block, ctx, options, torch.randn(2, 3, 32, 32))
    assert cfg.get('train_dataloader'), 'the zoo base config was not inherited'


def check_python_api(block, ctx):
    """The example runs through test_api's test of it, given this block's text."""
    from tests.test_engine import test_api
    assert block.section == 'Python API', 'test_api looks for the example under # Python API'
    ctx.monkeypatch.setattr(test_api, 'readme_python_api_example', lambda: block.body)
    test_api.test_readme_python_api_example_runs(ctx.tmp_path, ctx.monkeypatch)


def check_peft_sets(block, ctx):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS

    import vpetl_mm
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = PRETRAIN_MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='VisionTransformer', **TINY_BACKBONE),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=192)))
    model.eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(images)
        model = vpetl_mm.get_peft_model(model, dict(type='LoRA', rank=2), verbose=False)
        for p in model.backbone.parameters():
            if p.requires_grad:
                p.add_(0.1)
        lora = model(images)
        namespace = dict(model=model, images=images)
        exec(compile(block.body, 'README.md', 'exec'), namespace)
        assert torch.equal(namespace['plain_logits'], plain)
        assert not hasattr(model.backbone, 'peft')
        assert torch.equal(model(images), plain) and not torch.equal(lora, plain)


def check_vtab_layout(block, ctx):
    from vpetl_mm.datasets import VTAB1k
    from vpetl_mm.datasets.vtab import SPLITS
    lines = [ln.split('#')[0].strip() for ln in block.body.splitlines() if ln.strip()]
    assert len(lines) == 2, lines
    m = re.fullmatch(r'(\S+)/<folder>/\{([\w,]+)\}\.txt', lines[0])
    assert m, lines[0]
    prefix, splits = m.group(1), m.group(2).split(',')
    assert sorted(splits) == sorted(SPLITS)
    assert lines[1] == f'{prefix}/<folder>/images/...', lines[1]
    cfg = Config.fromfile(osp.join(ROOT, test_first_run.DTL_CFG))
    root = cfg.train_dataloader.dataset.data_root
    assert osp.dirname(root) == prefix, f'the configs read {root}'
    folder = ctx.tmp_path / root
    write_vtab(folder)
    assert sorted(p.name for p in folder.glob('*.txt')) == sorted(f'{s}.txt' for s in splits)
    for split in splits:
        listed = (folder / f'{split}.txt').read_text().splitlines()
        data = VTAB1k(str(folder), split, num_classes=3, pipeline=[])
        assert len(data) == len(listed)
        for i, line in enumerate(listed):
            path, label = line.rsplit(' ', 1)  # "<image path> <label>"
            info = data.get_data_info(i)
            assert info['img_path'] == osp.join(str(folder), path) and path.startswith('images/')
            assert int(info['gt_label']) == int(label)


def check_vtab_val200_child(block, ctx):
    base = re.match(r"_base_ = \['\./([^']+)'\]", block.first).group(1)
    homes = glob.glob(osp.join(ROOT, 'configs', '**', base), recursive=True)
    assert len(homes) == 1, f'{base}: {homes}'
    sub = osp.relpath(osp.dirname(homes[0]), osp.join(ROOT, 'configs'))
    work = checkout(ctx.tmp_path)
    configs_dir_copy(work, sub)
    child = f'configs/{sub}/readme_child.py'
    (work / child).write_text(block.body)
    cfg = Config.fromfile(str(work / child))
    write_vtab(work / cfg.train_dataloader.dataset.data_root)
    write_pretrained(str(work / cfg.model.backbone.pretrained), **TINY_BACKBONE)
    epochs = cfg.train_cfg.val_interval  # one selection round, as written
    size = [o for o in SIZE_ONLY if not o.startswith('train_cfg.')]
    out = run(['python', 'tools/train.py', child, '--cfg-options', *size,
               f'train_cfg.max_epochs={epochs}'], cwd=work)
    assert re.search(rf'Epoch\(val\) \[{epochs}\].*accuracy/top1', out), out[-3000:]
    work_dir = work / 'work_dirs' / stem(child)
    ran = Config.fromfile(str(work_dir / osp.basename(child)))
    assert ran.train_dataloader.dataset.split == 'train800'
    assert ran.val_dataloader.dataset.split == 'val200'
    assert ran.test_dataloader.dataset.split == 'test'
    paragraph = block.after.split('\n\n', 2)[:2]
    spans = inline_spans('\n\n'.join(paragraph))
    for span in spans:  # the files the text after the block names
        if span.startswith('configs/'):
            assert osp.isfile(osp.join(ROOT, span)), f'README names {span}: no such file'
    best = [s for s in spans if '*' in s and s.endswith('.pth')]
    assert best, 'the README no longer names the best checkpoint'
    ckpts = sorted(work_dir.glob(best[0]))
    assert len(ckpts) == 1, f'{best[0]} in {sorted(os.listdir(work_dir))}'
    # what tools/test.py reads (a run of it: first-run, train-test-usage)
    saved = torch.load(ckpts[0], map_location='cpu', weights_only=False)
    assert saved['meta']['peft'] and saved['state_dict']


def check_vit_converter(block, ctx):
    head = 'python tools/model_converters/vit2mmpretrain.py'
    convert_releases(by_head(block, head), head, checkout(ctx.tmp_path))


def check_clip_converter(block, ctx):
    head = 'python tools/model_converters/vit2mmpretrain.py'
    found = by_head(block, head, 'python tools/train.py')
    work = checkout(ctx.tmp_path)
    for _, out in convert_releases(found, head, work):
        assert 'OpenAI CLIP image tower' in out
    train = one(found, 'python tools/train.py')
    cfg = Config.fromfile(osp.join(ROOT, train[2]))
    assert osp.isfile(work / cfg.model.backbone.pretrained), 'trains on a file not converted'
    write_vtab(work / cfg.train_dataloader.dataset.data_root)
    out = run(train + ['--cfg-options', *TINY_CLIP], cwd=work)  # loads the converted tower
    assert 0 <= top1(out, 'val') <= 100


def check_swin_converter(block, ctx):
    head = 'python tools/model_converters/swin2mmpretrain.py'
    for _, out in convert_releases(by_head(block, head), head, checkout(ctx.tmp_path)):
        assert 'official-swin-v1 layout' in out


def check_videomae_converter(block, ctx):
    head = 'python tools/model_converters/videomae2mmaction.py'
    for _, out in convert_releases(by_head(block, head), head, checkout(ctx.tmp_path)):
        assert 'videomae-pretrain layout' in out


def check_train_work_dir(block, ctx):
    argv, ckpt = ctx.request.getfixturevalue('lora_train')
    assert argv == one(by_head(block, 'python tools/train.py'), 'python tools/train.py')
    assert ckpt.is_file(), f'{ckpt} not written'
    assert (ckpt.parent / f'{stem(argv[2])}.py').is_file()
    assert not (ctx.repo / 'work_dirs' / stem(argv[2])).exists(), '--work-dir was ignored'


def check_train_test_usage(block, ctx):
    found = by_head(block, 'python tools/train.py', 'python tools/test.py',
                    'bash tools/dist_train.sh', 'bash tools/dist_test.sh')
    lora_argv, ckpt = ctx.request.getfixturevalue('lora_train')
    repo = ctx.repo
    values = {'DIR': ['work_dirs/x'], 'CKPT': ['x.pth'], 'key=value': SIZE_ONLY, '...': [],
              'options': ['--cfg-options', *SIZE_ONLY], 'BACKEND': ['aot_eager']}

    def every_form(script, required, groups, extra=()):
        """Each optional group, each alternative, with and without nested optionals."""
        for group in groups:
            for alt in alternatives(group):
                for nested in (True, False):
                    parses(script, fill(required[2:] + alt, values, nested) + list(extra))

    # train: every option as written parses. With [--work-dir DIR] filled in it is the
    # train-work-dir block's command, which runs (lora_train); --resume (both forms) runs in
    # test_train_test_resume, --amp's refusal on a CPU in test_first_run.
    train = one(found, 'python tools/train.py')
    required, groups = usage(train)
    every_form('tools/train.py', required, groups)
    work_dir = [g for g in groups if g[:1] == ['--work-dir']]
    assert work_dir, f'{train}: no [--work-dir DIR]'
    values['DIR'] = lora_argv[lora_argv.index('--work-dir') + 1:][:1]
    assert required + fill(work_dir[0], values) == lora_argv, (
        f'{train} with --work-dir is not the command that runs: {lora_argv}')
    if any('--resume' in g for g in groups):
        # read, not imported: a second import of that module (pytest imports it under another
        # name) would re-register its crash hook with another Crash class
        with open(osp.join(ROOT, 'tests', 'test_tools', 'test_train_test_resume.py')) as f:
            source = f.read()
        assert "['--resume']" in source and "['--resume', resume]" in source
    if any('--amp' in g for g in groups):
        assert "'--amp'" in inspect.getsource(test_first_run.test_out_and_amp_options)
    if any('--tensorboard' in g for g in groups):
        assert "'--tensorboard'" in inspect.getsource(test_first_run.test_tensorboard_option)
    if any('--compile' in g for g in groups):
        assert "'--compile'" in inspect.getsource(
            test_first_run.test_compile_trains_through_torch_compile)

    # test: every form parses; the first alternative of each group runs
    values['CKPT'] = [str(ckpt.relative_to(repo))]  # the one-epoch run of lora_train
    test = one(found, 'python tools/test.py')
    required, groups = usage(test)
    every_form('tools/test.py', required, groups)
    argv = fill(required, values)
    for group in groups:
        argv += fill(alternatives(group)[0], values)
    out = run(argv + ['--cfg-options', *SIZE_ONLY], cwd=repo)
    tested = top1(out, 'test')
    outs = [a[a.index('--out') + 1] for g in groups for a in alternatives(g) if '--out' in a]
    if '--out' in argv:
        written = argv[argv.index('--out') + 1]
        assert json.loads((repo / written).read_text())['accuracy/top1'] == pytest.approx(
            tested, abs=1e-4)

    for argv, _ in found['bash tools/dist_train.sh']:
        mapped_to_first_run_dist_test(argv)

    # dist_test.sh with test.py's other --out alternative (per-sample predictions)
    dist = one(found, 'bash tools/dist_test.sh')
    required, groups = usage(dist)
    pkl = [o for o in outs if o.endswith('.pkl')]
    values.update(CONFIG=[train[2]], options=['--no-merge', *(['--out', pkl[0]] if pkl else []),
                                              '--cfg-options', *SIZE_ONLY])
    argv = fill(required, values)
    for group in groups:
        argv += fill(alternatives(group)[0], values)
    out = run(argv, cwd=repo)
    assert top1(out, 'test') == tested
    if pkl:
        with open(repo / pkl[0], 'rb') as f:
            assert len(pickle.load(f)) == len((repo / 'data/vtab-1k/cifar/test.txt')
                                              .read_text().splitlines())


def check_merge_peft(block, ctx):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    script = 'tools/model_converters/merge_peft.py'
    merge = one(by_head(block, f'python {script}'), f'python {script}')
    train, ckpt = ctx.request.getfixturevalue('lora_train')
    required, groups = usage(merge)
    assert not groups
    argv = fill(required, {'CONFIG': [train[2]], 'CKPT': [str(ckpt.relative_to(ctx.repo))]})
    run(argv + ['--cfg-options', *SIZE_ONLY], cwd=ctx.repo)
    cfg = config_with(osp.join(ROOT, train[2]), SIZE_ONLY)
    cfg.model.backbone = tool(script).plain_backbone_config(cfg.model.backbone)
    init_default_scope('mmpretrain')
    plain = MODELS.build(cfg.model)
    plain.load_state_dict(state_dict(ctx.repo / argv[-1]), strict=True)


def final_checkpoint(path, config):
    """``work_dirs/<config name>/epoch_<n>.pth`` in a README command: the folder a run of
    ``config`` writes and the file its full schedule ends with; returns the folder."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    m = re.fullmatch(r'(work_dirs/[^/]+)/epoch_(\d+)\.pth', path)
    assert m, f'{path}: not work_dirs/<name>/epoch_<n>.pth'
    assert m.group(1) == f'work_dirs/{stem(config)}', f'{config} writes elsewhere'
    assert int(m.group(2)) == cfg.train_cfg.max_epochs, f'{config}: {cfg.train_cfg}'
    return m.group(1)


def video_checkout(tmp_path, config, video):
    """A checkout with the config's video lists (mp4 files) and its pretrained file."""
    work = checkout(tmp_path)
    cfg = Config.fromfile(osp.join(ROOT, config))
    written = set()
    for n, loader in ((6, 'train_dataloader'), (4, 'val_dataloader'), (4, 'test_dataloader')):
        dataset = cfg[loader].dataset
        if dataset.ann_file not in written:
            written.add(dataset.ann_file)
            os.makedirs(osp.dirname(work / dataset.ann_file), exist_ok=True)
            video.write_list(work / dataset.data_prefix.video, work / dataset.ann_file, n,
                             seed=len(written) * 100)
    video.write_pretrained(str(work / cfg.model.backbone.pretrained),
                           video.inner_backbone(stem(config).split('_')[0]))
    return work


def check_video_tools(block, ctx):
    from tests.test_tools import test_video_tools as video
    found = by_head(block, 'python tools/train.py', 'python tools/test.py',
                    'bash tools/dist_train.sh')
    for argv, _ in found['bash tools/dist_train.sh']:  # run with 2 processes there
        test = video.test_dist_train_video_config
        assert osp.isfile(osp.join(ROOT, argv[2])) and argv[3].isdigit() and not argv[4:], argv
        assert "['bash', 'tools/dist_train.sh', path, '2'" in inspect.getsource(test)
    train = one(found, 'python tools/train.py')
    test = one(found, 'python tools/test.py')
    assert test[2] == train[2], 'the README tests another config than it trained'
    final_checkpoint(test[3], train[2])
    assert not test[4:], test
    work = video_checkout(ctx.tmp_path, train[2], video)
    options = video.shrink_options(stem(train[2]).split('_')[0])
    out = run(train + ['--cfg-options', *options], cwd=work)
    assert 'Trainable parameters' in out and 0 <= video.acc(out, 'val') <= 100
    # tools/test.py (the configs' 4-clip test) on such a checkpoint: run there
    run_by(video.test_train_then_test_video_config, test, ['python', 'tools/test.py'],
           "'tools/test.py', path")


def check_dense_tools(block, ctx):
    from tests.test_tools import test_dense_config_sweep as dense
    found = by_head(block, 'python tools/train.py', 'python tools/test.py',
                    'bash tools/dist_train.sh')
    for head, argvs in found.items():
        for argv, _ in argvs:
            if head.startswith('bash'):  # dist_train.sh CONFIG GPUS [train.py options]
                assert argv[3].isdigit(), argv
                script, options = 'tools/train.py', [argv[2]] + argv[4:]
            else:
                script, options = head.split()[-1], argv[2:]
            args = parses(script, options)
            assert args.config in dense.CONFIGS, f'{argv}: not a configs/dense config'
    test = one(found, 'python tools/test.py')
    cfg = Config.fromfile(osp.join(ROOT, test[2]))
    last = (f'iter_{cfg.train_cfg.max_iters}' if 'max_iters' in cfg.train_cfg
            else f'epoch_{cfg.train_cfg.max_epochs}')
    assert test[3] == f'work_dirs/{stem(test[2])}/{last}.pth', test
    sweep = dense.test_every_dense_config_trains_and_tests
    for snippet in ("'tools/train.py'", "'tools/test.py'", 'for c in CONFIGS'):
        assert snippet in inspect.getsource(sweep), f'the dense sweep no longer runs {snippet}'
    assert "'tools/dist_train.sh', config, '2'" in inspect.getsource(
        dense.test_dist_train_dense_config)


def _check_demo_commands(block, script, test_module, call):
    """Every ``python <script>`` line of ``block`` parses with the script's own parser, and
    ``test_module`` still runs the demo (its source holds ``call``)."""
    found = by_head(block, f'python {script}')
    options = set(parser_of(script)._option_string_actions)
    for argv, _ in found[f'python {script}']:
        for option in [a for a in argv[2:] if a.startswith('--')]:
            assert option in options, f'README: {" ".join(argv)}: {script} has no {option}'
        try:
            parser_of(script).parse_args(argv[2:])
        except SystemExit:
            pytest.fail(f'{script} does not accept the README arguments {argv[2:]}')
    assert call in inspect.getsource(test_module), \
        f'{test_module.__name__} no longer runs the demo'


def check_video_demo(block, ctx):
    from tests.test_demo import test_video_demo
    _check_demo_commands(block, 'tools/demo/video_demo.py', test_video_demo, 'video_demo.main(')


def check_dense_demo(block, ctx):
    from tests.test_demo import test_dense_demo
    _check_demo_commands(block, 'tools/demo/dense_demo.py', test_dense_demo, 'dense_demo.main(')


def check_video_csv_list(block, ctx):
    from mmengine.registry import init_default_scope
    from mmaction.registry import DATASETS
    from vpetl_mm.engine.data_paths import check_dataset_paths
    config = one(select(find_block('video-tools'), 'python tools/train.py'),
                 'python tools/train.py')[2]
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.merge_from_dict(Config.fromstring(block.body, '.py').to_dict())
    work = checkout(ctx.tmp_path)
    dataset = cfg.train_dataloader.dataset
    lines = []
    for i in range(3):  # "/full/path/video.mp4,label", no header
        path = ctx.tmp_path / 'videos' / f'clip {i}.mp4'
        os.makedirs(path.parent, exist_ok=True)
        write_video(path, (48, 64), frames=16, seed=i)
        lines.append(f'{path},{i}\n')
    os.makedirs(osp.dirname(work / dataset.ann_file), exist_ok=True)
    (work / dataset.ann_file).write_text(''.join(lines))
    ctx.monkeypatch.chdir(work)  # the list path is relative to the repository root
    check_dataset_paths(cfg, loaders=('train_dataloader', ))
    init_default_scope('mmaction')
    built = DATASETS.build(dict(dataset, pipeline=[]))
    expected = [(path, int(label)) for path, label in (ln.strip().rsplit(',', 1) for ln in lines)]
    assert [(d['filename'], d['label']) for d in built] == expected, 'the CSV list was misread'


def check_benchmark_train(block, ctx):
    script = 'tools/analysis_tools/benchmark_train.py'
    argv = one(by_head(block, f'python {script}'), f'python {script}')
    methods = parses(script, argv[2:]).methods
    for span in inline_spans(section(readme_text(), 'Benchmarks')):
        if span.startswith(('--methods', '--dense')):  # a table's options, quoted inline
            args = parses(script, shlex.split(span))
            missing = [m for m in args.methods if args.dense and not osp.isfile(
                tool(script).dense_config(args.dense, m))]
            assert not missing, f'{span}: no configs/dense config for {missing}'
    out = run(argv + ['--batch-size', '2', '--steps', '1', '--img-size', '32',
                      '--arch', 'deit-tiny'], cwd=checkout(ctx.tmp_path))
    for method in methods:
        assert re.search(rf'^{re.escape(method)}\s+[\d,]+\s', out, re.M), out[-3000:]


def with_every_option(block, script):
    """``(argv, groups)``: the block's ``python script`` command with every optional group
    filled in, and those groups."""
    argv = one(by_head(block, f'python {script}'), f'python {script}')
    required, groups = usage(argv)
    for group in groups:
        required += group
    return required, groups


def check_benchmark_peers(block, ctx):
    script = 'tools/analysis_tools/benchmark_peers.py'
    required, groups = with_every_option(block, script)
    work = checkout(ctx.tmp_path)
    out = run(required + ['--arch', 'deit-tiny', '--img-size', '32', '--seg-size', '32',
                          '--frames', '2', '--batch-size', '2', '--rounds', '1'], cwd=work)
    pairs = parses(script, required[2:]).pairs
    for pair in pairs:
        assert re.search(rf'^{re.escape(pair)}\s', out, re.M), out[-3000:]
    written = [g[1] for g in groups if g[0] == '--out']
    for path in written:
        assert len(json.loads((work / path).read_text())['rows']) == len(pairs)


def check_benchmark_dyt(block, ctx):
    script = 'tools/analysis_tools/benchmark_dyt.py'
    required, _ = with_every_option(block, script)
    out = run(required + ['--batch-size', '2', '--iters', '1', '--img-size', '32',
                          '--arch', 'deit-tiny'], cwd=checkout(ctx.tmp_path))
    assert 'measured activation rate' in out, out[-3000:]


def check_mutation_check(block, ctx):
    script = 'tools/misc/mutation_check.py'
    found = commands(block)
    assert found and all(a[1:2] == [script] for a, _ in found), (
        f'{block}: no check for {[a for a, _ in found if a[1:2] != [script]]}')
    module = tool(script)
    for argv, _ in found:
        check_venv_path(argv[0])
        args = parses(script, argv[2:])
        for name in args.method_files:
            assert osp.isfile(osp.join(ROOT, 'vpetl_mm', 'peft', f'{name}.py')), name
        types, tests = module.formula_tests(args.method_files)
        assert types and tests
        for test in tests:
            assert osp.isfile(osp.join(ROOT, test.split('::')[0])), test


# ---------------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------------

def test_every_readme_block_has_one_check():
    blocks = readme_blocks()
    assert blocks, f'no fenced code block in {README}'
    problems = []
    for block in blocks:
        ids = [i for i in CHECKS if covers(i, block)]
        if len(ids) != 1:
            problems.append(f'{block} is covered by {ids or "no entry of CHECKS"}')
    for check_id in CHECKS:
        n = sum(bool(covers(check_id, b)) for b in blocks)
        if n != 1:
            problems.append(f'CHECKS[{check_id!r}] matches {n} README blocks (stale entry?)')
        if 'check_' + check_id.replace('-', '_') not in globals():
            problems.append(f'no check function for {check_id!r}')
    assert not problems, '\n'.join(problems)


def test_block_parsing():
    """The notation the checks rely on."""
    argv = shlex.split('python t.py C [--a DIR] [--r [CKPT]] [--o x.json | --o y.pkl] [options]')
    required, groups = usage(argv)
    assert required == ['python', 't.py', 'C']
    assert groups == [['--a', 'DIR'], ['--r', '[CKPT]'], ['--o', 'x.json', '|', '--o', 'y.pkl'],
                      ['options']]
    assert alternatives(groups[2]) == [['--o', 'x.json'], ['--o', 'y.pkl']]
    values = {'DIR': ['d'], 'CKPT': ['c'], 'options': ['--x']}
    assert fill(groups[1], values) == ['--r', 'c'] and fill(groups[1], values, False) == ['--r']
    assert fill(['w/.../e.pth', 'options'], values) == ['c', '--x']
    with pytest.raises(AssertionError, match="placeholder 'OTHER'"):
        fill(['OTHER'], values)
    block = Block(lang='bash', body='a x \\\n  --y 1  # note\n# more\nb z\n', line=1, section='',
                  page='README.md',
                  after='')
    assert commands(block) == [(['a', 'x', '--y', '1'], ' note  more'), (['b', 'z'], '')]
    with pytest.raises(AssertionError, match=r"no check for the command\(s\) \['b z'\]"):
        by_head(block, 'a')


@pytest.mark.parametrize('check_id', list(CHECKS))
def test_readme_block(check_id, request, tmp_path, monkeypatch):
    block = find_block(check_id)
    ctx = SimpleNamespace(request=request, tmp_path=tmp_path, monkeypatch=monkeypatch,
                          repo=None)
    if check_id in ('first-run', 'work-dir-listing', 'train-work-dir', 'train-test-usage',
                    'merge-peft'):
        ctx.repo = request.getfixturevalue('repo')
    globals()['check_' + check_id.replace('-', '_')](block, ctx)

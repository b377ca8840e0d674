"""The digits demo: its command line, the README's table against the committed results of a
full run, and the demo end to end, shortened (1 source epoch, 1 adaptation epoch)."""
import json
import os
import os.path as osp
import re

import pytest

pytest.importorskip('sklearn')
pytest.importorskip('mmpretrain')

from tools.demo import digits_demo  # noqa: E402
from vpetl_mm.datasets.digits import export_digits_vtab  # noqa: E402

PAGE = osp.join(digits_demo.ROOT, 'docs', 'digits-demo.md')


def demo_section():
    with open(PAGE) as f:
        return f.read()


def committed_results():
    with open(digits_demo.COMMITTED_RESULTS) as f:
        return json.load(f)


def test_export_layout(tmp_path):
    sizes = export_digits_vtab(str(tmp_path), classes=(3, 7), shift='invert_rotate')
    assert sizes['train800val200'] == sizes['train800'] + sizes['val200']
    lines = (tmp_path / 'test.txt').read_text().splitlines()
    assert len(lines) == sizes['test']
    path, label = lines[0].rsplit(' ', 1)
    assert path.startswith('images/test/') and label in ('0', '1')
    assert (tmp_path / path).exists()


def test_method_lists_match_the_configs():
    available = digits_demo.available_methods()
    assert 'linear' in available and 'digits_base' not in available
    assert sorted(digits_demo.ALL_METHODS) == available
    assert digits_demo.all_methods() == list(digits_demo.ALL_METHODS)
    assert set(digits_demo.DEFAULT_METHODS) < set(available)


def resolve(argv):
    parser = digits_demo.build_parser()
    return digits_demo.check_args(parser, parser.parse_args(argv)).methods


def test_method_selection():
    assert resolve([]) == list(digits_demo.DEFAULT_METHODS)
    assert resolve(['--all']) == list(digits_demo.ALL_METHODS)
    assert resolve(['--methods', 'all']) == list(digits_demo.ALL_METHODS)
    assert resolve(['--methods', 'lora', 'linear', 'lora']) == ['lora', 'linear']


@pytest.mark.parametrize('argv, message', [
    (['--methods', 'lora', 'foo'], 'unknown method foo'),
    (['--methods', 'foo', 'linear', 'bar'], 'unknown methods foo, bar'),
    (['--methods', 'digits_base'], 'unknown method digits_base'),
    (['--methods', 'all', 'lora'], '--methods all takes no other names'),
    (['--all', '--methods', 'lora'], '--all and --methods exclude each other'),
    (['--threads', '0'], '--threads must be at least 1'),
    (['--epochs', '0'], '--epochs must be at least 1'),
])
def test_bad_command_line_stops_before_any_work(tmp_path, capsys, argv, message):
    """An unknown name stops the demo before the data export and the source pre-training (it
    used to train every method before it first), naming the valid methods."""
    work, data = tmp_path / 'work', tmp_path / 'data'
    with pytest.raises(SystemExit) as exc:
        digits_demo.main(argv + ['--work-dir', str(work), '--data-root', str(data)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if 'unknown' in message:
        assert 'valid names: all, ' + ', '.join(digits_demo.available_methods()) in err
    assert not work.exists() and not data.exists()


def test_readme_table_is_the_committed_full_run():
    """The demo page's table and the figures its prose quotes are rendered from the committed
    results file, which holds a full ``--all --fresh`` run of the demo (real output, never
    edited by hand: regenerate it with the demo and ``--render-table``)."""
    results = committed_results()
    rows = results['results']
    assert [r['method'] for r in rows] == list(digits_demo.ALL_METHODS)
    assert results['epochs'] is None and results['source_epochs'] is None
    assert results['environment']['threads'] == digits_demo.DEFAULT_THREADS
    assert results['source']['reused'] is False
    section = demo_section()
    table = [line for line in section.splitlines() if line.startswith('|')]
    assert table == digits_demo.render_table(results), (
        'docs/digits-demo.md\'s table differs from docs/digits_demo_results.json; paste the '
        'output of python tools/demo/digits_demo.py --render-table docs/digits_demo_results.json')
    top1 = {r['method']: r['top1'] for r in rows}
    linear = top1.pop('linear')
    quoted = re.search(r'the linear probe stays at ([\d.]+)%', section)
    assert quoted and quoted.group(1) == f'{linear:.1f}', 'docs/digits-demo.md: the linear probe'
    spread = re.search(r'adapt the backbone reach ([\d.]+)-([\d.]+)%', section)
    assert spread and spread.groups() == (f'{min(top1.values()):.1f}',
                                          f'{max(top1.values()):.1f}'), 'docs/digits-demo.md: range'


def test_render_table_command(capsys):
    assert digits_demo.main(['--render-table', digits_demo.COMMITTED_RESULTS]) is None
    out = capsys.readouterr().out.splitlines()
    assert out == digits_demo.render_table(digits_demo.COMMITTED_RESULTS)
    assert out[2].startswith('| linear | ') and out[2].endswith(' | 0 |')


def test_demo_runs_and_prints_table(tmp_path, capsys):
    """The demo with the linear probe and LoRA: the table is printed and written to
    results.json, and LoRA, which adapts the frozen backbone to the shifted target task, clearly
    beats the linear probe, as in the README's table (there after full training; here after one
    epoch each on a one-epoch source backbone). A LoRA whose update never reached the backbone
    would train only the head and stay at the linear probe's level."""
    work = tmp_path / 'work'
    argv = ['--methods', 'linear', 'lora', '--epochs', '1', '--source-epochs', '1',
            '--work-dir', str(work), '--data-root', str(tmp_path / 'data')]
    rows = digits_demo.main(argv)
    out = capsys.readouterr().out
    assert 'method' in out and 'lora' in out and 'linear' in out
    assert [r[0] for r in rows] == ['linear', 'lora']
    assert rows[0][2] == 0 and rows[1][2] == 4 * 2 * (64 * 8 + 8 * 64)
    (_, linear, *_), (_, lora, *_) = rows
    assert 0 <= linear <= 100 and 0 <= lora <= 100
    assert lora >= linear + 5, f'LoRA {lora:.1f}% does not beat the linear probe {linear:.1f}%'
    assert os.path.exists(work / 'source_backbone.pth')

    results = json.loads((work / digits_demo.RESULTS).read_text())
    assert [(r['method'], r['top1'], r['trainable']) for r in results['results']] == [
        (m, acc, n) for m, acc, n, _ in rows]
    assert results['epochs'] == 1 and results['source_epochs'] == 1
    assert results['environment']['threads'] == digits_demo.DEFAULT_THREADS
    assert results['environment']['deterministic'] is True
    assert results['source']['reused'] is False
    assert digits_demo.render_table(results)[3].startswith('| lora | ')

    # a second run reuses the data and the source backbone made with the same settings
    rows_again = digits_demo.main(argv[:2] + argv[3:])
    assert 'reusing the source backbone' in capsys.readouterr().out
    assert rows_again[0][:3] == rows[0][:3], 'the same settings gave another linear probe'

"""docs/methods.md is generated from the registry and must match it."""
import pytest

pytest.importorskip('mmpretrain')
from tools.misc import gen_method_docs  # noqa: E402


def test_methods_page_is_up_to_date():
    assert gen_method_docs.main(['--check']) == 0, \
        'docs/methods.md is stale: run python tools/misc/gen_method_docs.py'


def test_every_registered_method_is_documented():
    from vpetl_mm.registry import PEFT_METHODS
    text = gen_method_docs.render()
    for name, cls in PEFT_METHODS.module_dict.items():
        assert f'`{name}`' in text
        assert cls.placement and cls.paper, f'{name} lacks placement / paper for the docs'


def _table_counts(lines):
    """``[(type names, count cell)]`` of a Markdown method table (first cell: backticked type
    names, fourth: the ViT-B/16 count)."""
    import re
    rows = []
    for line in lines:
        if line.startswith('| `') and not line.startswith('| `type`'):
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            rows.append((re.findall(r'`([^`]+)`', cells[0]), cells[3]))
    return rows


def test_readme_counts_are_the_generated_ones():
    """The method table of docs/method-notes.md quotes the ViT-B/16 count of docs/methods.md
    (generated from the registry and the default configs) for every method: one source for
    each figure."""
    import os.path as osp
    import re
    readme = open(osp.join(gen_method_docs.ROOT, 'docs', 'method-notes.md')).read().splitlines()
    generated_rows = _table_counts(gen_method_docs.render().splitlines())
    docs = {name: cell for names, cell in generated_rows for name in names}
    start = readme.index('## Methods')
    rows = {names[0]: cell for names, cell in _table_counts(
        readme[start:readme.index('', start + 8)])}
    assert set(rows) <= set(docs), set(rows) - set(docs)
    missing = [names for names, _ in generated_rows if not set(names) & set(rows)]
    assert not missing, f'methods without a row in docs/method-notes.md: {missing}'
    for name, cell in rows.items():
        generated = docs[name]
        if generated.startswith('not on a ViT'):
            assert cell.startswith('not on a ViT'), (name, cell)
            continue
        figures = re.findall(r'\d[\d,]*\d|\d', cell.split('(')[0].split(':')[-1])
        assert figures and figures[0] == generated, \
            f'docs/method-notes.md says {cell!r} for {name}; docs/methods.md: {generated}'

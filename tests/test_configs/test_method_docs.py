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

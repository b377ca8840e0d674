"""Fold mergeable PEFT methods into the frozen weights before testing."""
from mmengine.hooks import Hook

from vpetl_mm.models import get_peft_state
from vpetl_mm.registry import HOOKS

from .utils import runner_model


@HOOKS.register_module()
class MergeBeforeTestHook(Hook):
    """Before ``runner.test()``, merge every PEFT backbone whose methods are all mergeable.

    The merged backbone is a plain one, so testing runs at the unmodified backbone's speed.
    Backbones with a method that cannot be merged are left as they are (logged).

    Args:
        enable (bool): set False to test the unmerged model.
    """
    priority = 'VERY_HIGH'

    def __init__(self, enable: bool = True):
        self.enable = enable

    def before_test(self, runner) -> None:
        if not self.enable:
            return
        model = runner_model(runner)
        for state in get_peft_state(model):
            if state.mergeable:
                names = list(state.methods)
                state.merge()
                runner.logger.info(f'merged PEFT methods {names} into the backbone for testing')
            else:
                runner.logger.info('PEFT methods not mergeable; testing unmerged: '
                                   f'{[n for n, m in state.methods.items() if not m.mergeable]}')

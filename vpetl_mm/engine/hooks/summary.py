"""Log trainable / total parameters at the start of training."""
from mmengine.hooks import Hook

from vpetl_mm.engine.trainable import parameter_summary
from vpetl_mm.models import get_peft_state
from vpetl_mm.registry import HOOKS

from .utils import runner_model


def format_summary(model, depth: int = 1) -> str:
    """A table of trainable / total parameters per module and in percent, plus the methods."""
    rows = parameter_summary(model, depth)
    width = max(len(r[0]) for r in rows) + 2
    lines = [f'{"module":<{width}}{"trainable":>14}{"total":>14}{"%":>9}']
    for name, trainable, total in rows:
        pct = 100.0 * trainable / total if total else 0.0
        lines.append(f'{name:<{width}}{trainable:>14,}{total:>14,}{pct:>8.3f}%')
    for state in get_peft_state(model):
        for name, method in state.methods.items():
            tuned = method.tuned_elements()
            note = '' if tuned is None else (
                f'; tunes {tuned:,} elements of its tensors (the trainable column counts '
                'these; the optimizer holds the whole tensors)')
            lines.append(f'PEFT method {name}: {type(method).__name__}'
                         f'{" (mergeable)" if method.mergeable else ""}{note}')
    return '\n'.join(lines)


@HOOKS.register_module()
class PEFTSummaryHook(Hook):
    """Before training, log trainable / total parameters per top-level module.

    Args:
        depth (int): module depth of the rows (1: ``backbone``, ``head``, ...).
    """
    priority = 'LOW'

    def __init__(self, depth: int = 1):
        self.depth = depth

    def before_train(self, runner) -> None:
        model = runner_model(runner)
        runner.logger.info('Trainable parameters:\n' + format_summary(model, self.depth))

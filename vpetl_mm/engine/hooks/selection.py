"""Run the selection pass of data-driven PEFT methods (SCT, GPS) before training."""
from typing import Iterator, Optional

from mmengine.hooks import Hook

from vpetl_mm.models import get_peft_state
from vpetl_mm.registry import HOOKS

from .utils import runner_model


@HOOKS.register_module()
class PEFTSelectionHook(Hook):
    """Before training, let every PEFT method with ``needs_selection`` pick what it tunes.

    The pass runs once over the training data (or ``dataloader``, e.g. the training split without
    augmentation) with the model's data preprocessor. It is skipped for methods whose selection
    is already in place, which is the case after ``--resume`` or ``load_from`` (the selection is
    stored with the trainable weights), so a resumed run keeps its channels / connections.

    Args:
        dataloader (dict, optional): a dataloader config for the pass; the runner's
            ``train_dataloader`` when ``None``.
        max_batches (int, optional): stop after this many batches (default: one full pass).
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, dataloader: Optional[dict] = None, max_batches: Optional[int] = None):
        self.dataloader = dataloader
        self.max_batches = max_batches

    def _batches(self, runner, model) -> Iterator[dict]:
        loader = (runner.train_dataloader if self.dataloader is None
                  else runner.build_dataloader(self.dataloader, seed=runner.seed))
        for i, data in enumerate(loader):
            if self.max_batches is not None and i >= self.max_batches:
                return
            yield model.data_preprocessor(data, False)

    def before_train(self, runner) -> None:
        model = runner_model(runner)
        for state in get_peft_state(model):
            for name, method in state.methods.items():
                if not method.needs_selection:
                    continue
                if method.is_selected():
                    runner.logger.info(f'PEFT method {name}: selection loaded, not recomputed')
                    continue
                runner.logger.info(f'PEFT method {name}: running its selection pass')
                was_training = model.training
                summary = method.select(model, self._batches(runner, model))
                model.train(was_training)
                for p in model.parameters():  # nothing of the pass may leak into step 1
                    p.grad = None
                runner.logger.info(f'PEFT method {name}: {summary}')
            for method in state.methods.values():
                method.check_optimizer(runner.optim_wrapper)

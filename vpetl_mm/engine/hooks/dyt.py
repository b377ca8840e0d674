"""DyT's training hook: adds its rate loss and reports the measured activation rate."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from vpetl_mm.models import get_peft_state
from vpetl_mm.registry import HOOKS


def dyt_methods(model):
    from vpetl_mm.peft.dyt import DyT
    return [m for state in get_peft_state(model) for m in state.methods.values()
            if isinstance(m, DyT)]


def add_dyt_rate_loss(model) -> bool:
    """Make ``model.loss`` (the toolbox model, unwrapped) also return each DyT method's rate
    loss (``loss_dyt_rate``, ``loss_dyt_rate1``, ...). Idempotent; False when there is no DyT."""
    methods = dyt_methods(model)
    if not methods:
        return False
    if not getattr(model, '_vpetl_dyt_loss', False):
        original = model.loss

        def loss(*args, **kwargs):
            losses = original(*args, **kwargs)
            for i, method in enumerate(methods):
                losses[f'loss_dyt_rate{i or ""}'] = method.rate_loss()
            return losses

        model.loss = loss
        model._vpetl_dyt_loss = True
    for method in methods:
        method.rate_loss_attached = True
    return True


@HOOKS.register_module()
class DyTHook(Hook):
    """For models with a ``DyT`` method: adds ``loss_dyt_rate`` (:meth:`DyT.rate_loss`) to the
    model's losses (:func:`add_dyt_rate_loss`), logs the activation rate of the training
    iterations (``train/dyt_rate``) and of every validation / test run. It is in the vpetl_mm
    default runtime (a no-op without DyT); DyT refuses to train without its rate loss.
    """
    priority = 'NORMAL'

    def before_train(self, runner):
        add_dyt_rate_loss(runner.model.module if is_model_wrapper(runner.model) else runner.model)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._report(runner, 'train')

    def after_val_epoch(self, runner, metrics=None):
        self._report(runner, 'val', log=True)

    def after_test_epoch(self, runner, metrics=None):
        self._report(runner, 'test', log=True)

    def _report(self, runner, mode, log=False):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for i, method in enumerate(dyt_methods(model)):
            rate = method.activation_rate()
            runner.message_hub.update_scalar(f'{mode}/dyt_rate{i or ""}', rate)
            if log:
                runner.logger.info(f'DyT activation rate ({mode}): {rate:.3f} of the patch '
                                   f'tokens went through the MLPs (target '
                                   f'{method.target_rate})')

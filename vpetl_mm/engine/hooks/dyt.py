"""DyT's training hook: adds its rate loss and reports the measured activation rate."""
from mmengine.hooks import Hook

from vpetl_mm.models import get_peft_state
from vpetl_mm.registry import HOOKS

from .utils import runner_model


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

        def loss(inputs, data_samples, **kwargs):
            distill = [m for m in methods if m.distill]
            if distill:
                losses = _distillation_losses(model, distill, inputs, data_samples)
            else:
                losses = original(inputs, data_samples, **kwargs)
            for i, method in enumerate(methods):
                losses[f'loss_dyt_rate{i or ""}'] = method.rate_loss()
            return losses

        model.loss = loss
        model._vpetl_dyt_loss = True
    for method in methods:
        method.rate_loss_attached = True
    return True


def _distillation_losses(model, methods, inputs, data_samples) -> dict:
    """DyT's self-distillation: the student's loss, the complete model's (every token through
    the MLPs) loss, and ``KL(teacher || student)`` on the logits with the teacher detached."""
    import torch.nn.functional as F
    if not (hasattr(model, 'extract_feat') and hasattr(model, 'head')):
        raise TypeError(f'DyT distill=True needs a classifier with extract_feat and head; '
                        f'{type(model).__name__} has not both')
    feats = model.extract_feat(inputs)
    losses = dict(model.head.loss(feats, data_samples))
    student = model.head(feats)
    for method in methods:
        method.complete = True
    try:
        teacher_feats = model.extract_feat(inputs)
    finally:
        for method in methods:
            method.complete = False
    teacher = model.head(teacher_feats)
    losses['loss_dyt_teacher'] = model.head.loss(teacher_feats, data_samples)['loss']
    losses['loss_dyt_distill'] = F.kl_div(F.log_softmax(student, -1),
                                          F.log_softmax(teacher.detach(), -1),
                                          log_target=True, reduction='batchmean')
    return losses


@HOOKS.register_module()
class DyTHook(Hook):
    """For models with a ``DyT`` method: adds ``loss_dyt_rate`` (:meth:`DyT.rate_loss`) to the
    model's losses (:func:`add_dyt_rate_loss`), logs the activation rate of the training
    iterations (``train/dyt_rate``) and of every validation / test run. It is in the vpetl_mm
    default runtime (a no-op without DyT); DyT refuses to train without its rate loss.
    """
    priority = 'NORMAL'

    def before_train(self, runner):
        add_dyt_rate_loss(runner_model(runner))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._report(runner, 'train')

    def after_val_epoch(self, runner, metrics=None):
        self._report(runner, 'val', log=True)

    def after_test_epoch(self, runner, metrics=None):
        self._report(runner, 'test', log=True)

    def _report(self, runner, mode, log=False):
        model = runner_model(runner)
        for i, method in enumerate(dyt_methods(model)):
            rate = method.activation_rate()
            runner.message_hub.update_scalar(f'{mode}/dyt_rate{i or ""}', rate)
            if log:
                runner.logger.info(f'DyT activation rate ({mode}): {rate:.3f} of the patch '
                                   f'tokens went through the MLPs (target '
                                   f'{method.target_rate})')

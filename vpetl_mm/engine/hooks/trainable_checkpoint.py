"""Save only the weights that train; check them when loading."""
from mmengine.hooks import Hook

from vpetl_mm.engine.trainable import check_peft_configs, trainable_state_dict
from vpetl_mm.models import get_peft_state
from vpetl_mm.registry import HOOKS

from .utils import runner_model


@HOOKS.register_module()
class TrainableCheckpointHook(Hook):
    """Keep only the trainable weights (PEFT modules, head, ...) in saved checkpoints.

    The frozen backbone comes back from ``pretrained`` when the model is built, so a checkpoint
    of a few hundred kilobytes restores the model (``tools/test.py CONFIG CKPT``) and resumes
    training (``--resume``; optimizer and scheduler states are kept as usual). The PEFT method
    configs are stored under ``meta['peft']``. On load, a checkpoint whose PEFT configs differ
    from the model's raises an error instead of loading into the wrong modules.
    """
    priority = 'NORMAL'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner_model(runner)
        full = checkpoint['state_dict']
        checkpoint['state_dict'] = trainable_state_dict(model, full)
        checkpoint.setdefault('meta', {})['peft'] = [s.method_cfgs for s in get_peft_state(model)]
        runner.logger.info(f'checkpoint keeps {len(checkpoint["state_dict"])} of {len(full)} '
                           'state-dict entries (the trainable ones)')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Check the PEFT configs; complete a trainable-only state dict from the model.

        mmengine calls this before loading ``checkpoint`` into the model. The frozen weights a
        trainable-only checkpoint leaves out are filled in with the model's own (from
        ``pretrained``), so the load is complete and reports no missing keys.
        """
        saved = checkpoint.get('meta', {}).get('peft')
        if saved is None:
            return
        model = runner_model(runner)
        current = [s.method_cfgs for s in get_peft_state(model)]
        check_peft_configs(saved, current)
        state_dict = checkpoint['state_dict']
        for key, value in model.state_dict().items():
            state_dict.setdefault(key, value)


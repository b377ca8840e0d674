"""``vpetl_mm.CompileHook``: the model's forward through ``torch.compile``, in place."""
from mmengine.hooks import Hook
from mmengine.logging import print_log

from vpetl_mm.registry import HOOKS

from .utils import runner_model


@HOOKS.register_module()
class CompileHook(Hook):
    """Compile the model (``nn.Module.compile``: its parameter names and checkpoints stay as
    they are) before the run. ``tools/train.py --compile [BACKEND]`` adds it.

    mmengine's own ``compile`` option compiles ``train_step``, optimizer step included, which
    torch's compiler cannot trace through mmengine's optimizer wrapper (torch 2.14: an internal
    error in its optimizer variable); the forward alone compiles, and the PEFT methods in it
    run without graph breaks except DyT's token gathering (tests/test_models/test_compile.py).

    Args:
        backend (str): the ``torch.compile`` backend. Defaults to ``'inductor'``.
        **kwargs: further ``torch.compile`` options (``mode``, ``dynamic``, ...).
    """
    priority = 'VERY_LOW'  # after the hooks that shape the model before the run

    def __init__(self, backend: str = 'inductor', **kwargs):
        self.options = dict(backend=backend, **kwargs)

    def before_run(self, runner) -> None:
        runner_model(runner).compile(**self.options)
        print_log(f'CompileHook: the model runs through torch.compile({self.options})',
                  logger='current')

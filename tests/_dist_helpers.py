"""Helpers of the distributed tests: a free port for torchrun, and a hook with which every rank
dumps its trainable weights after training."""
import os
import socket

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from vpetl_mm.engine import trainable_state_dict
from vpetl_mm.engine.hooks.utils import runner_model


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@HOOKS.register_module(force=True)
class DumpTrainablePerRankHook(Hook):

    def after_run(self, runner):
        model = runner_model(runner)
        torch.save(trainable_state_dict(model),
                   os.path.join(runner.work_dir, f'trainable_rank{get_rank()}.pth'))

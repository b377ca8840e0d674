"""``vpetl_mm.AutocastOptimWrapper``: mixed precision without a loss scale, on CPUs as on GPUs.

mmengine's ``AmpOptimWrapper`` refuses to build without an accelerator (its loss scaler is
CUDA's). bfloat16 keeps float32's exponent range, so it needs no loss scaling: this wrapper only
runs the forward (and so the loss) under ``torch.autocast`` on the model's device type. The
parameters, their gradients and the optimizer state stay float32. ``tools/train.py --amp`` uses
it where there is no GPU.
"""
from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from vpetl_mm.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` whose :meth:`optim_context` enters ``torch.autocast``.

    Args:
        dtype (str | torch.dtype): the autocast dtype. Defaults to ``'bfloat16'`` (the only
            dtype CPU autocast supports).
        **kwargs: ``OptimWrapper``'s (``optimizer``, ``accumulative_counts``, ``clip_grad``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs):
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
        if not isinstance(self.cast_dtype, torch.dtype):
            raise ValueError(f'AutocastOptimWrapper dtype={dtype!r} is not a torch dtype')

    @contextmanager
    def optim_context(self, model: nn.Module):
        """mmengine's context (gradient accumulation) with the forward under autocast on the
        device type of ``model``'s parameters."""
        param = next(model.parameters(), None)
        device = param.device.type if param is not None else 'cpu'
        with super().optim_context(model), torch.autocast(device, dtype=self.cast_dtype):
            yield

"""Distributed training on machines without a GPU.

mmengine's runner passes ``device_ids=[LOCAL_RANK]`` to every DistributedDataParallel wrapper,
which torch rejects for a module on the CPU. ``CPUCompatibleDDP`` drops ``device_ids`` when the
module's parameters live on the CPU, so ``tools/dist_train.sh CONFIG 2`` runs with the gloo backend
(``tools/train.py`` selects both when CUDA is unavailable). torch's ``SyncBatchNorm`` runs on
GPUs only (it raises for CPU inputs in a process group), so on the CPU the wrapper turns the
SyncBN layers of the zoo's dense heads (mmdet's Cascade R-CNN heads, mmseg's UperNet) into
plain BatchNorm first, with a log line: each process then normalises over its own batch.
"""
import torch
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm

from vpetl_mm.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUCompatibleDDP(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` that also wraps CPU modules."""

    def __init__(self, module, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        if on_cpu:
            device_ids = None
            module = self._revert_sync_batchnorm(module)
        super().__init__(module=module, device_ids=device_ids, **kwargs)

    @staticmethod
    def _revert_sync_batchnorm(module):
        """``module`` with its ``SyncBatchNorm`` layers as BatchNorm (states kept)."""
        if not any(isinstance(m, torch.nn.SyncBatchNorm) for m in module.modules()):
            return module
        print_log('CPUCompatibleDDP: SyncBatchNorm runs on GPUs only; on the CPU its layers '
                  'normalise over each process\'s own batch (BatchNorm)', logger='current')
        return revert_sync_batchnorm(module)

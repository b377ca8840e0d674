"""Distributed training on machines without a GPU.

mmengine's runner passes ``device_ids=[LOCAL_RANK]`` to every DistributedDataParallel wrapper,
which torch rejects for a module on the CPU. ``CPUCompatibleDDP`` drops ``device_ids`` when the
module's parameters live on the CPU, so ``tools/dist_train.sh CONFIG 2`` runs with the gloo backend
(``tools/train.py`` selects both when CUDA is unavailable).
"""
from mmengine.model import MMDistributedDataParallel

from vpetl_mm.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUCompatibleDDP(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` that also wraps CPU modules."""

    def __init__(self, module, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        if on_cpu:
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)

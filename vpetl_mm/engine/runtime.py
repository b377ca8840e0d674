"""Give a config whose model holds a ``PEFTBackbone`` the vpetl_mm runtime it needs.

A model-zoo config wrapped in ``PEFTBackbone`` keeps its toolbox's runtime: without the vpetl_mm
hooks it would save whole-model checkpoints without ``meta['peft']``, log no parameter summary
and run no selection pass (SCT, GPS) or rate loss (DyT). ``tools/train.py`` and
``tools/test.py`` call :func:`complete_peft_runtime`, which adds what is missing and keeps what
the config sets.
"""
from typing import List

from mmengine.config import ConfigDict

# (hook type, what it does), in the order of configs/_base_/default_runtime.py
PEFT_HOOKS = (
    ('vpetl_mm.PEFTSelectionHook', 'selection pass of SCT / GPS'),
    ('vpetl_mm.DyTHook', "DyT's rate loss and activation log"),
    ('vpetl_mm.PEFTSummaryHook', 'trainable / total parameter summary'),
    ('vpetl_mm.TrainableCheckpointHook', "trainable-only checkpoints with meta['peft']"),
)


def holds_peft_backbone(node) -> bool:
    """Whether a config (dict / list tree) builds a ``PEFTBackbone`` somewhere."""
    if isinstance(node, dict):
        if str(node.get('type', '')).split('.')[-1] == 'PEFTBackbone':
            return True
        return any(holds_peft_backbone(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(holds_peft_backbone(v) for v in node)
    return False


def complete_peft_runtime(cfg) -> List[str]:
    """Add the vpetl_mm hooks, the ``vpetl_mm`` import and atomic checkpoint writes to ``cfg``
    where its model holds a ``PEFTBackbone`` and the config lacks them; return one line per
    addition (empty when nothing was missing or the model has no ``PEFTBackbone``)."""
    if not holds_peft_backbone(cfg.get('model', None)):
        return []
    added = []
    imports = cfg.get('custom_imports', None) or ConfigDict(imports=[],
                                                            allow_failed_imports=False)
    if 'vpetl_mm' not in list(imports.get('imports', [])):
        imports['imports'] = list(imports.get('imports', [])) + ['vpetl_mm']
        cfg.custom_imports = imports
        added.append("custom_imports: 'vpetl_mm'")
    hooks = list(cfg.get('custom_hooks', None) or [])
    present = {str(h.get('type', '')).split('.')[-1] for h in hooks}
    for hook_type, purpose in PEFT_HOOKS:
        if hook_type.split('.')[-1] not in present:
            hooks.append(ConfigDict(type=hook_type))
            added.append(f'custom_hooks: {hook_type} ({purpose})')
    cfg.custom_hooks = hooks
    checkpoint = cfg.get('default_hooks', {}).get('checkpoint', None)
    if checkpoint is not None and not checkpoint.get('backend_args'):
        checkpoint['backend_args'] = dict(backend='vpetl_atomic')
        added.append("default_hooks.checkpoint.backend_args: backend='vpetl_atomic' "
                     '(checkpoints written atomically)')
    return added

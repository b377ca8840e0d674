"""Lifecycle hooks, registered in the ``vpetl_mm`` scope."""
from .compile import CompileHook
from .dyt import DyTHook, add_dyt_rate_loss
from .merge import MergeBeforeTestHook
from .selection import PEFTSelectionHook
from .summary import PEFTSummaryHook
from .trainable_checkpoint import TrainableCheckpointHook

__all__ = [
    'CompileHook', 'DyTHook', 'MergeBeforeTestHook', 'PEFTSelectionHook', 'PEFTSummaryHook',
    'TrainableCheckpointHook', 'add_dyt_rate_loss'
]

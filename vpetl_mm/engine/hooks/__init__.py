"""Lifecycle hooks, registered in the ``vpetl_mm`` scope."""
from .merge import MergeBeforeTestHook
from .selection import PEFTSelectionHook
from .summary import PEFTSummaryHook
from .trainable_checkpoint import TrainableCheckpointHook

__all__ = ['MergeBeforeTestHook', 'PEFTSelectionHook', 'PEFTSummaryHook', 'TrainableCheckpointHook']

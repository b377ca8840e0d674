"""Lifecycle hooks, registered in the ``vpetl_mm`` scope."""
from .merge import MergeBeforeTestHook
from .summary import PEFTSummaryHook
from .trainable_checkpoint import TrainableCheckpointHook

__all__ = ['MergeBeforeTestHook', 'PEFTSummaryHook', 'TrainableCheckpointHook']

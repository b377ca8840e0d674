"""Engine: lifecycle hooks, the trainable-parameter utilities they use, the autocast optimizer
wrapper."""
from .hooks import MergeBeforeTestHook, PEFTSummaryHook, TrainableCheckpointHook
from .optim_wrapper import AutocastOptimWrapper
from .trainable import parameter_summary, trainable_state_dict

__all__ = ['AutocastOptimWrapper', 'MergeBeforeTestHook', 'PEFTSummaryHook',
           'TrainableCheckpointHook', 'parameter_summary', 'trainable_state_dict']

"""Engine: lifecycle hooks and the trainable-parameter utilities they use."""
from .hooks import MergeBeforeTestHook, PEFTSummaryHook, TrainableCheckpointHook
from .trainable import parameter_summary, trainable_state_dict

__all__ = ['MergeBeforeTestHook', 'PEFTSummaryHook', 'TrainableCheckpointHook',
           'parameter_summary', 'trainable_state_dict']

"""Full fine-tuning: every backbone parameter trains."""
from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod


@PEFT_METHODS.register_module()
class FullFineTune(PEFTMethod):
    """Unfreeze the whole backbone. Trivially mergeable: the weights are the backbone's own."""
    placement = 'every backbone weight'
    mergeable = True
    paper = 'full fine-tuning baseline'

    def attach(self, backbone, spec):
        for param in backbone.parameters():
            spec.tune(param)

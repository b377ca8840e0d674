"""Linear probing: the whole backbone stays frozen; only the task head trains."""
from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod


@PEFT_METHODS.register_module()
class LinearProbe(PEFTMethod):
    """Train nothing in the backbone. Trivially mergeable (there is nothing to fold)."""
    placement = 'nothing in the backbone; the head trains'
    mergeable = True
    paper = 'linear probing baseline'

    def attach(self, backbone, spec):
        pass

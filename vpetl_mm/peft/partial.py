"""Partial-k: fine-tune the last k blocks, freeze the rest."""
from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod


@PEFT_METHODS.register_module()
class PartialK(PEFTMethod):
    """Unfreeze every parameter of the last ``k`` blocks (in the spec's forward order).

    Only block parameters train: the final norm and the patch embedding stay frozen (as in the
    Mona repository's Partial-1, which trains ``layers.3.blocks.1`` of Swin). Nothing is added,
    so the model is its own merge.

    Args:
        k (int): number of trailing blocks to train. Defaults to 1.

    ViT-B/16, k=1: 7,087,872 parameters.
    """
    placement = 'all weights of the last k blocks'
    mergeable = True
    paper = 'Partial fine-tuning baseline (Yosinski et al., 2014; VPT, ECCV 2022)'

    def __init__(self, k: int = 1):
        super().__init__()
        self.k = k

    def attach(self, backbone, spec):
        if not 1 <= self.k <= len(spec.blocks):
            raise ValueError(f'PartialK k={self.k}: choose 1..{len(spec.blocks)} for this '
                             'backbone')
        for block in spec.blocks[-self.k:]:
            for param in block.module.parameters():
                spec.tune(param)

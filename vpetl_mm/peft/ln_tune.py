"""LN-tune: train only the affine parameters of the backbone's LayerNorms."""
from torch import nn

from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod


@PEFT_METHODS.register_module()
class LNTune(PEFTMethod):
    """Unfreeze the weight and bias of every ``nn.LayerNorm`` in the backbone.

    On ViT: ``norm1``/``norm2`` of every block and the final norm; on Swin also the patch
    embedding's, the patch-merging and the output norms. Nothing is added, so the model is its
    own merge.

    ViT-B/16: 12 x 2 x 1,536 + 1,536 = 38,400 parameters.
    """
    placement = 'every LayerNorm weight and bias'
    mergeable = True
    paper = 'LayerNorm tuning baseline (V-PETL Bench)'

    def attach(self, backbone, spec):
        for module in backbone.modules():
            if isinstance(module, nn.LayerNorm):
                for param in module.parameters(recurse=False):
                    spec.tune(param)

"""BitFit: train only the bias terms of the backbone.

Zaken, Ravfogel and Goldberg, "BitFit: Simple Parameter-efficient Fine-tuning for
Transformer-based Masked Language-models", ACL 2022.
"""
from vpetl_mm.registry import PEFT_METHODS

from .base import PEFTMethod


def is_bias(name: str) -> bool:
    """Whether parameter ``name`` is a bias term (its last name component mentions ``bias``)."""
    return 'bias' in name.rsplit('.', 1)[-1]


@PEFT_METHODS.register_module()
class BitFit(PEFTMethod):
    """Unfreeze every backbone parameter whose own name contains ``bias``.

    That is the biases of the patch embedding, of every linear and of every norm (the V-PETL
    benchmark's selection); on Swin it also includes the relative-position bias tables, and on the
    mmaction ViT its separate ``q_bias`` / ``v_bias`` (as the Mona repository's BitFit does).
    Nothing is added, so the model is its own merge.

    ViT-B/16: 102,912 parameters.
    """
    placement = 'every bias of the backbone'
    mergeable = True
    paper = ('Zaken et al., BitFit: Simple Parameter-efficient Fine-tuning for '
             'Transformer-based Masked Language-models, ACL 2022')

    def attach(self, backbone, spec):
        for name, param in backbone.named_parameters():
            if is_bias(name):
                spec.tune(param)

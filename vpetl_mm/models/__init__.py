"""Models: the PEFT backbone wrapper, backbone specs and weight converters."""
from .peft_backbone import PEFTBackbone, PEFTState, get_peft_state, load_pretrained
from .specs import BackboneSpec, get_spec

__all__ = ['PEFTBackbone', 'PEFTState', 'get_peft_state', 'load_pretrained', 'BackboneSpec',
           'get_spec']

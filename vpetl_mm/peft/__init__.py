"""PEFT methods, one module per method, registered in ``vpetl_mm.registry.PEFT_METHODS``."""
from .adapter import Adapter
from .base import PEFTMethod
from .dtl import DTL, DTLPlus
from .full import FullFineTune
from .linear_probe import LinearProbe
from .lora import LoRA

__all__ = ['PEFTMethod', 'LinearProbe', 'FullFineTune', 'LoRA', 'Adapter', 'DTL', 'DTLPlus']

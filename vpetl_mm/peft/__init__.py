"""PEFT methods, one module per method, registered in ``vpetl_mm.registry.PEFT_METHODS``.

Every module of this package is imported here, so a new method file registers itself; the
classes below are the package's public names.
"""
import importlib
import pkgutil

from .adapter import Adapter
from .adapter_plus import AdapterPlus
from .adaptformer import AdaptFormer
from .arc import ARC, ARCAtt
from .base import PEFTMethod
from .bitfit import BitFit
from .compacter import Compacter
from .dtl import DTL, DTLPlus
from .dyt import DyT
from .e3va import E3VA
from .fact import FacTTK, FacTTT
from .gps import GPS
from .full import FullFineTune
from .houlsby import HoulsbyAdapter
from .hst import HST
from .hydra import Hydra
from .kadaptation import KAdaptation
from .linear_probe import LinearProbe
from .ln_tune import LNTune
from .last import LAST
from .lora import LoRA
from .lorand import LoRand
from .lst import LST
from .mona import Mona
from .partial import PartialK
from .patt import PATT
from .prefix import PrefixTuning
from .repadapter import RepAdapter
from .restuning import ResTuning, ResTuningBypass
from .sct import SCT
from .snf import SNF
from .vpt import VPTDeep, VPTShallow
from .ssf import SSF

__all__ = [
    'PEFTMethod', 'LinearProbe', 'FullFineTune', 'LoRA', 'Adapter', 'DTL', 'DTLPlus', 'BitFit',
    'LNTune', 'PartialK', 'AdaptFormer', 'SSF', 'RepAdapter', 'Hydra', 'FacTTT', 'FacTTK',
    'AdapterPlus', 'ARC', 'ARCAtt', 'HoulsbyAdapter', 'Compacter', 'SCT', 'GPS', 'KAdaptation',
    'VPTShallow', 'VPTDeep', 'LoRand', 'Mona', 'PATT', 'DyT', 'LST', 'HST', 'SNF',
    'ResTuning', 'ResTuningBypass', 'LAST', 'PrefixTuning', 'E3VA'
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')

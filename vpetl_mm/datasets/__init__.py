"""Datasets: VTAB-1K and the digits exporter used by the demo."""
from .digits import export_digits_vtab
from .vtab import VTAB_DATASETS, VTAB1k

__all__ = ['VTAB1k', 'VTAB_DATASETS', 'export_digits_vtab']

"""NAS-benchmark lookup tables."""
from .nb201 import DATASETS, NB201Table

__all__ = ["NB201Table", "DATASETS"]

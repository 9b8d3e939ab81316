"""NAS-benchmark lookup tables: NAS-Bench-201 (CSV) and NAS-Bench-101 (the official TFRecord, read without TensorFlow)."""
from .nb101 import NB101Table
from .nb201 import DATASETS, NB201Table

__all__ = ["NB201Table", "NB101Table", "DATASETS"]

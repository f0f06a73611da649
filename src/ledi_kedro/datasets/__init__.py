"""Kedro datasets of this project; every save is atomic (temporary file, then rename)."""

from .atomic import AtomicJSONDataset, AtomicPolarsDataset
from .tensors import TensorDictDataset

__all__ = ["AtomicJSONDataset", "AtomicPolarsDataset", "TensorDictDataset"]

"""Kedro datasets of this project; every save is atomic (temporary file, then rename)."""

from .atomic import AtomicJSONDataset, AtomicMatplotlibDataset, AtomicPolarsDataset, AtomicTextDataset, AtomicYAMLDataset
from .models import GeneratorDataset, TrainedModelDataset
from .tensors import TensorDictDataset

__all__ = ["GeneratorDataset", "AtomicJSONDataset", "AtomicMatplotlibDataset", "AtomicPolarsDataset", "AtomicTextDataset", "AtomicYAMLDataset", "TensorDictDataset",
           "TrainedModelDataset"]

"""Atomic variants of kedro-datasets' file datasets.

kedro-datasets writes straight into the target file, so an interrupted save leaves a truncated
artifact behind. These subclasses point the parent's writer at a temporary sibling and rename it
onto the target only once the write has finished.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from kedro.io import DatasetError
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.polars import EagerPolarsDataset
from kedro_datasets.text import TextDataset
from kedro_datasets.yaml import YAMLDataset

from ledi_kedro.core.io import atomic_path


class _AtomicSaveMixin:
    _filepath: PurePosixPath
    _protocol: str

    def save(self, data: Any) -> None:
        parent_save = super().save  # type: ignore[misc]
        parent_save = getattr(parent_save, "__wrapped__", parent_save).__get__(self)
        if self._protocol != "file":  # remote stores have their own atomicity
            parent_save(data)
            return
        original = self._filepath
        with atomic_path(str(original)) as tmp:
            self._filepath = PurePosixPath(tmp.as_posix())
            try:
                parent_save(data)
            finally:
                self._filepath = original


class AtomicJSONDataset(_AtomicSaveMixin, JSONDataset):
    """``json.JSONDataset`` with atomic saves."""


class AtomicPolarsDataset(_AtomicSaveMixin, EagerPolarsDataset):
    """``polars.EagerPolarsDataset`` with atomic saves."""


class AtomicTextDataset(_AtomicSaveMixin, TextDataset):
    """``text.TextDataset`` with atomic saves."""


class AtomicMatplotlibDataset(_AtomicSaveMixin, MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` (one figure per file) with atomic saves; closes the figure.

    Loading returns the saved image file's bytes (e.g. to embed a PNG in a report).
    """

    def load(self) -> bytes:  # type: ignore[override]
        path = str(self._filepath)
        if not self._fs.exists(path):
            raise DatasetError(f"{path}: plot does not exist; run the pipeline that draws it")
        with self._fs.open(path, "rb") as fh:
            return fh.read()

    def save(self, data) -> None:  # type: ignore[override]
        import matplotlib.pyplot as plt

        try:
            super().save(data)
        finally:
            plt.close(data)


class AtomicYAMLDataset(_AtomicSaveMixin, YAMLDataset):
    """``yaml.YAMLDataset`` with atomic saves."""

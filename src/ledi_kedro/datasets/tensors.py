"""A Kedro dataset for a dict of tensors in one safetensors file (no pickle, atomic saves)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kedro.io import AbstractDataset, DatasetError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ledi_kedro.core.io import atomic_path

_META_KEY = "__metadata__"


class TensorDictDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """``{name: tensor}`` stored as safetensors; the optional ``__metadata__`` entry is a JSON-able dict.

    Numpy arrays are accepted on save and come back as torch tensors.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata  # Kedro-Viz layer etc.

    def load(self) -> dict[str, Any]:
        if not self._filepath.is_file():
            raise DatasetError(f"{self._filepath}: tensor file does not exist; run the pipeline that makes it")
        try:
            with safe_open(str(self._filepath), framework="pt") as fh:  # one read: tensors and metadata
                tensors: dict[str, Any] = {name: fh.get_tensor(name) for name in fh.keys()}
                raw_meta = fh.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise DatasetError(f"{self._filepath}: not a readable safetensors file ({exc})") from exc
        if "json" in raw_meta:
            tensors[_META_KEY] = json.loads(raw_meta["json"])
        return tensors

    def save(self, data: dict[str, Any]) -> None:
        meta = data.get(_META_KEY, {})
        tensors = {}
        for name, value in data.items():
            if name == _META_KEY:
                continue
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(np.ascontiguousarray(value))
            if not isinstance(value, torch.Tensor):
                raise DatasetError(f"{self._filepath}: entry {name!r} is {type(value).__name__}, not a tensor")
            tensors[name] = value.detach().cpu().contiguous()
        with atomic_path(self._filepath) as tmp:
            save_file(tensors, str(tmp), metadata={"json": json.dumps(meta)})

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

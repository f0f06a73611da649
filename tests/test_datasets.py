"""Project datasets: round trips, no pickle, and atomic saves that never clobber a good file."""

import json

import numpy as np
import polars as pl
import pytest
import torch
from kedro.io import DatasetError

from ledi_kedro.core.io import atomic_write_bytes
from ledi_kedro.datasets import AtomicJSONDataset, AtomicPolarsDataset, TensorDictDataset


def test_tensor_round_trip_with_metadata(tmp_path):
    ds = TensorDictDataset(str(tmp_path / "t.safetensors"))
    ds.save({"images": np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2),
             "labels": torch.tensor([1, -1]), "__metadata__": {"class_names": ["a", "b"]}})
    back = ds.load()
    assert back["images"].dtype == torch.uint8 and back["images"].shape == (2, 3, 2, 2)
    assert back["labels"].tolist() == [1, -1]
    assert back["__metadata__"] == {"class_names": ["a", "b"]}


def test_tensor_failed_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    ds = TensorDictDataset(str(path))
    ds.save({"x": torch.ones(3)})
    good = path.read_bytes()
    with pytest.raises(DatasetError, match="not a tensor"):
        ds.save({"x": torch.zeros(3), "y": "oops"})
    import ledi_kedro.datasets.tensors as mod

    def half_write(tensors, filename, metadata=None):
        open(filename, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(mod, "save_file", half_write)
    with pytest.raises(DatasetError, match="disk full"):
        ds.save({"x": torch.zeros(3)})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_tensor_load_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="missing.safetensors"):
        TensorDictDataset(str(tmp_path / "missing.safetensors")).load()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(DatasetError, match="bad.safetensors"):
        TensorDictDataset(str(bad)).load()


def test_json_failed_save_keeps_old_file(tmp_path):
    path = tmp_path / "r.json"
    ds = AtomicJSONDataset(filepath=str(path))
    ds.save({"a": 1})
    with pytest.raises(DatasetError):
        ds.save({"a": 2, "b": object()})  # json.dump fails half-way through
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert ds.load() == {"a": 1}


def test_polars_round_trip(tmp_path):
    ds = AtomicPolarsDataset(filepath=str(tmp_path / "m.parquet"), file_format="parquet")
    df = pl.DataFrame({"id": [1, 2], "label": [None, 3]})
    ds.save(df)
    assert ds.load().equals(df)
    assert oct((tmp_path / "m.parquet").stat().st_mode & 0o777) != oct(0o600)


def test_atomic_write_bytes_replaces(tmp_path):
    atomic_write_bytes(tmp_path / "f", b"one")
    atomic_write_bytes(tmp_path / "f", b"two")
    assert (tmp_path / "f").read_bytes() == b"two"

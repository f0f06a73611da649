"""Kedro datasets for a trained model and for a trained generator, each one directory (safetensors weights + JSON;
never pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from ledi_kedro.core.checkpoint import CheckpointError
from ledi_kedro.core.artifacts import (
    GeneratorArtifact, TrainedModel, load_generator_artifact, load_trained, save_generator, save_trained,
)


class _CheckpointDirDataset(AbstractDataset):
    """A checkpoint directory (``state.json`` and safetensors), loaded on the CPU; a subclass names what it holds
    (``_kind``, ``_missing``: what to run when it is not there) and how it is read and written."""

    _kind: type
    _missing: str

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _read(self, path: Path) -> Any:
        raise NotImplementedError

    def _write(self, path: Path, data: Any) -> None:
        raise NotImplementedError

    def load(self) -> Any:
        if not self._exists():
            raise DatasetError(f"{self._filepath}: {self._missing}")
        try:
            return self._read(self._filepath)
        except CheckpointError as exc:
            raise DatasetError(str(exc)) from exc

    def save(self, data: Any) -> None:
        if not isinstance(data, self._kind):
            raise DatasetError(f"{self._filepath}: expected a {self._kind.__name__}, got {type(data).__name__}")
        self._write(self._filepath, data)

    def _exists(self) -> bool:
        return (self._filepath / "state.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class TrainedModelDataset(_CheckpointDirDataset):
    """Saves/loads a :class:`~ledi_kedro.core.artifacts.TrainedModel` as a directory.

    Loading happens on the CPU; nodes move models to their device.
    """

    _kind = TrainedModel
    _missing = "no trained model here; run the pipeline that trains it"

    def _read(self, path: Path) -> TrainedModel:
        return load_trained(path, "cpu")

    def _write(self, path: Path, data: TrainedModel) -> None:
        save_trained(path, data)


class GeneratorDataset(_CheckpointDirDataset):
    """Saves/loads a trained generator (:class:`~ledi_kedro.core.artifacts.GeneratorArtifact`: the flow model, its
    source's parts, its decoder and warmth table) as one directory. Loading happens on the CPU."""

    _kind = GeneratorArtifact
    _missing = "no generator here; run the train_fm pipeline that assembles it"

    def _read(self, path: Path) -> GeneratorArtifact:
        return load_generator_artifact(path, "cpu")

    def _write(self, path: Path, data: GeneratorArtifact) -> None:
        save_generator(path, data)

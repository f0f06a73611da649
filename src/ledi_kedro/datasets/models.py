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


class TrainedModelDataset(AbstractDataset[TrainedModel, TrainedModel]):
    """Saves/loads a :class:`~ledi_kedro.core.artifacts.TrainedModel` as a directory.

    Loading happens on the CPU; nodes move models to their device.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> TrainedModel:
        if not (self._filepath / "state.json").is_file():
            raise DatasetError(f"{self._filepath}: no trained model here; run the pipeline that trains it")
        try:
            return load_trained(self._filepath, "cpu")
        except CheckpointError as exc:
            raise DatasetError(str(exc)) from exc

    def save(self, data: TrainedModel) -> None:
        if not isinstance(data, TrainedModel):
            raise DatasetError(f"{self._filepath}: expected a TrainedModel, got {type(data).__name__}")
        save_trained(self._filepath, data)

    def _exists(self) -> bool:
        return (self._filepath / "state.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class GeneratorDataset(AbstractDataset[GeneratorArtifact, GeneratorArtifact]):
    """Saves/loads a trained generator (:class:`~ledi_kedro.core.artifacts.GeneratorArtifact`: the flow model, its
    source's parts, its decoder and warmth table) as one directory. Loading happens on the CPU."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> GeneratorArtifact:
        if not (self._filepath / "state.json").is_file():
            raise DatasetError(f"{self._filepath}: no generator here; run the train_fm pipeline that assembles it")
        try:
            return load_generator_artifact(self._filepath, "cpu")
        except CheckpointError as exc:
            raise DatasetError(str(exc)) from exc

    def save(self, data: GeneratorArtifact) -> None:
        if not isinstance(data, GeneratorArtifact):
            raise DatasetError(f"{self._filepath}: expected a GeneratorArtifact, got {type(data).__name__}")
        save_generator(self._filepath, data)

    def _exists(self) -> bool:
        return (self._filepath / "state.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

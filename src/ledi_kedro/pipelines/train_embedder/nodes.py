"""The quality judge: a domain classifier trained on the data set's own labels (an autoencoder when
there are none), or a check that the CLIP / Inception weights are there. Trained once per data set
and reused by ``train_fm`` (quality during training), ``evaluate`` and ``tune``."""

from __future__ import annotations

from typing import Any

import polars as pl

from ledi_kedro.core.artifacts import TrainedModel
from ledi_kedro.params import parse
from ledi_kedro.steps.training import train_judge
from ledi_kedro.training_nodes import history_frame, plot_loss_history


def train_quality_embedder(train_image_tensors: dict[str, Any], validation_image_tensors: dict[str, Any],
                           embedder: dict, run: dict) -> tuple[TrainedModel, dict[str, Any], pl.DataFrame]:
    """The judge's record, its metrics (validation accuracy, training time) and its loss history
    (:func:`ledi_kedro.steps.training.train_judge`)."""
    model, metrics, result = train_judge(train_image_tensors, validation_image_tensors, parse("embedder", embedder),
                                         parse("run", run))
    return model, metrics, history_frame(result)


def plot_embedder_loss(history: pl.DataFrame):
    return plot_loss_history(history, "quality judge")

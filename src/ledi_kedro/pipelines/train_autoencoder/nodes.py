"""Autoencoder training and latent caching (latent space only; pixel space passes images through)."""

from __future__ import annotations

from typing import Any

import polars as pl

from ledi_kedro.core.artifacts import TrainedModel
from ledi_kedro.params import parse
from ledi_kedro.steps import training as steps
from ledi_kedro.training_nodes import history_frame, plot_loss_history


def train_autoencoder(train_images: dict[str, Any], autoencoder: dict, run: dict) -> tuple[TrainedModel, pl.DataFrame]:
    """Train the KL autoencoder, or describe the pretrained one; pixel space gets an identity record
    (:func:`ledi_kedro.steps.training.train_autoencoder`)."""
    model, result = steps.train_autoencoder(train_images, parse("autoencoder", autoencoder), parse("run", run))
    return model, history_frame(result)


def cache_latents(autoencoder_model: TrainedModel, train_images: dict[str, Any], validation_images: dict[str, Any],
                  run: dict) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Encode the train and validation splits once (the "VAE latent caching" step; the evaluation encodes the test
    split); pixel space passes the images through (:func:`ledi_kedro.steps.training.model_inputs`)."""
    return steps.model_inputs(autoencoder_model, train_images, validation_images, parse("run", run))


def plot_autoencoder_loss(history: pl.DataFrame):
    return plot_loss_history(history, "autoencoder")

"""Summaries and plots of the image flow models (the training step itself, shared with ``tune``, is
:func:`ledi_kedro.training_nodes.train_fm_model` for LeDiFlow, :func:`~ledi_kedro.training_nodes.train_baseline_model` for
the N(0, I) baseline)."""

from __future__ import annotations

from typing import Any

import polars as pl

from ledi_kedro.core.artifacts import GeneratorArtifact, TrainedModel
from ledi_kedro.core.config import from_dict
from ledi_kedro.params import FMVariant, parse
from ledi_kedro.steps.training import flow_training_status
from ledi_kedro.training_nodes import final_loss, plot_loss_history


def summarize_fm(fm_model: TrainedModel, history: pl.DataFrame, quality_history: pl.DataFrame, fm: dict,
                 variant: dict) -> dict[str, Any]:
    """Training figures, whether the quality reached its plateau or training hit the step cap, and the warmth
    chosen per solver and NFE (a model trained with ``fm.warmth``)."""
    status = flow_training_status(quality_history["quality"].to_list() if quality_history.height else [],
                                  history.height, parse("fm", fm), from_dict(FMVariant, variant, "variant"),
                                  quality_history["step"].to_list() if quality_history.height else [])
    warmth = {k: fm_model.meta[k] for k in ("warmth_by_solver", "warmth_fd") if fm_model.meta.get("warmth_fd")}
    return status | warmth | {"final_train_loss": final_loss(history)}


def assemble_generator(fm_model: TrainedModel, autoencoder_model: TrainedModel, prior_model: TrainedModel | None = None,
                       latent_flow_model: TrainedModel | None = None) -> GeneratorArtifact:
    """The trained generator as one artifact: the flow model, its source's parts (LeDiFlow's prior and latent
    sampler), its decoder and, in the flow's record, its warmth table."""
    return GeneratorArtifact.of(fm_model, prior_model, latent_flow_model, autoencoder_model)


def plot_fm_loss(history: pl.DataFrame, variant: dict):
    v = from_dict(FMVariant, variant, "variant")
    return plot_loss_history(history, f"flow model ({v.prior} prior)")

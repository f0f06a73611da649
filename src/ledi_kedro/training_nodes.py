"""The training nodes shared by the pipelines (and by ``tune``, which chains them on its own): each parses
its YAML sections and calls its step in :mod:`ledi_kedro.steps.training` (the functions the GPU check
calls too), then turns the training result into tables and plots. Pipelines import from here, never from
each other."""

from __future__ import annotations

import logging
from typing import Any

import polars as pl
import torch
from matplotlib.figure import Figure  # figures without pyplot: nodes render to files, never to a window

from ledi_kedro.core.artifacts import TrainedModel
from ledi_kedro.core.config import ConfigError, from_dict
from ledi_kedro.core.trainer import TrainResult
from ledi_kedro.params import FMVariant, parse
from ledi_kedro.steps import training as steps

log = logging.getLogger(__name__)


def history_frame(result: TrainResult | None) -> pl.DataFrame:
    """One row per training step: step, loss (none for a part that was not trained)."""
    if result is None:
        return empty_history()
    return pl.DataFrame({"step": list(range(1, len(result.loss_history) + 1)), "loss": result.loss_history},
                        schema={"step": pl.Int64, "loss": pl.Float64})


def empty_history() -> pl.DataFrame:
    return pl.DataFrame(schema={"step": pl.Int64, "loss": pl.Float64})


def plot_loss_history(history: pl.DataFrame, title: str) -> Figure:
    """Per-step loss (faint) and its moving average, log-scaled."""
    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.subplots()
    if history.height:
        steps, loss = history["step"].to_numpy(), history["loss"].to_numpy()
        ax.plot(steps, loss, alpha=0.3, lw=0.8, label="per step")
        window = max(1, history.height // 50)
        smooth = history["loss"].rolling_mean(window_size=window, min_samples=1).to_numpy()
        ax.plot(steps, smooth, lw=1.5, label=f"mean of {window}")
        if (loss > 0).all():
            ax.set_yscale("log")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "not trained (pixel space)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def final_loss(history: pl.DataFrame) -> float | None:
    """Mean loss over the last 10 % of the steps (a less noisy end-of-training figure)."""
    if history.height == 0:
        return None
    tail = max(1, history.height // 10)
    return float(history["loss"].tail(tail).mean())


# ---------------------------------------------------------------- the trained parts' nodes
QUALITY_SCHEMA = {"step": pl.Int64, "quality": pl.Float64, "seconds": pl.Float64}


def quality_frame(result: TrainResult) -> pl.DataFrame:
    """One row per evaluation during training: step, quality (lower is better), seconds it took."""
    return pl.DataFrame(result.eval_history, schema=QUALITY_SCHEMA)


def train_prior_model(train_model_input: dict[str, Any], validation_model_input: dict[str, Any], prior: dict,
                      run: dict) -> tuple[TrainedModel, pl.DataFrame]:
    """:func:`ledi_kedro.steps.training.train_prior`, and its loss history."""
    model, result = steps.train_prior(train_model_input, validation_model_input, parse("prior", prior), parse("run", run))
    return model, history_frame(result)


def encode_prior_codes(prior_model: TrainedModel, train_model_input: dict[str, Any], run: dict) -> dict[str, torch.Tensor]:
    """:func:`ledi_kedro.steps.training.encode_codes` of every training image."""
    return steps.encode_codes(prior_model, train_model_input, parse("run", run))


def train_latent_flow_model(prior_codes: dict[str, torch.Tensor], prior_model: TrainedModel,
                            autoencoder_model: TrainedModel, quality_embedder: TrainedModel,
                            validation_model_input: dict[str, Any], latent_flow: dict,
                            run: dict) -> tuple[TrainedModel, pl.DataFrame, pl.DataFrame]:
    """:func:`ledi_kedro.steps.training.train_latent_flow`, its loss history and its quality history."""
    model, result = steps.train_latent_flow(prior_codes, prior_model, autoencoder_model, quality_embedder,
                                            validation_model_input, parse("latent_flow", latent_flow),
                                            parse("run", run))
    return model, history_frame(result), quality_frame(result)


def train_fm_model(train_model_input: dict[str, Any], prior_model: TrainedModel, prior_codes: dict[str, Any],
                   latent_flow_model: TrainedModel, autoencoder_model: TrainedModel, quality_embedder: TrainedModel,
                   validation_image_tensors: dict[str, Any], fm: dict, variant: dict,
                   run: dict) -> tuple[TrainedModel, pl.DataFrame, pl.DataFrame]:
    """:func:`ledi_kedro.steps.training.train_flow` from the learned prior (LeDiFlow), its loss and quality
    histories."""
    v = from_dict(FMVariant, variant, "variant")
    if v.prior != "learned":
        raise ConfigError(f"variant.prior={v.prior!r}: LeDiFlow's instance of train_fm trains from the learned prior")
    model, result = steps.train_flow(train_model_input, prior_model, prior_codes, latent_flow_model,
                                     autoencoder_model, quality_embedder, validation_image_tensors, parse("fm", fm), v,
                                     parse("run", run))
    return model, history_frame(result), quality_frame(result)


def train_baseline_model(train_model_input: dict[str, Any], autoencoder_model: TrainedModel,
                         quality_embedder: TrainedModel, validation_image_tensors: dict[str, Any], fm: dict,
                         variant: dict,
                         run: dict) -> tuple[TrainedModel, pl.DataFrame, pl.DataFrame]:
    """:func:`ledi_kedro.steps.training.train_flow` from N(0, I) (the baseline), its loss and quality histories:
    it reads nothing of the learned prior."""
    v = from_dict(FMVariant, variant, "variant")
    if v.prior != "gaussian":
        raise ConfigError(f"variant.prior={v.prior!r}: the baseline's instance of train_fm trains from N(0, I)")
    model, result = steps.train_flow(train_model_input, None, None, None, autoencoder_model, quality_embedder,
                                     validation_image_tensors, parse("fm", fm), v, parse("run", run))
    return model, history_frame(result), quality_frame(result)

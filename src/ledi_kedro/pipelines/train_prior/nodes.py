"""The auxiliary prior model: encoder q(z|y) and decoder P_L(x|z), trained with the VGL + KL
(the training step itself, shared with ``tune``, is :func:`ledi_kedro.training_nodes.train_prior_model`)."""

from __future__ import annotations

from typing import Any

import polars as pl

from ledi_kedro.core.artifacts import TrainedModel
from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.metrics.model_quality import prior_metrics
from ledi_kedro.core.subsets import class_coverage, derive_seed
from ledi_kedro.params import parse
from ledi_kedro.steps.training import prior_eval_rows
from ledi_kedro.training_nodes import final_loss, plot_loss_history


def evaluate_prior(prior_model: TrainedModel, validation_model_input: dict[str, Any], history: pl.DataFrame,
                   prior: dict, run: dict) -> dict[str, Any]:
    """Held-out VGL, KL per z dimension, MSE of the prior mean and mean predicted std (EMA weights), on the
    prior's held-out images (``eval_images`` of the validation split's monitor block, as during training)."""
    run_p, p = parse("run", run), parse("prior", prior)
    subset = prior_eval_rows(validation_model_input, p, run_p)
    metrics = prior_metrics(prior_model.inference, subset["images"], p.loss, p.beta,
                            resolve_device(run_p.device), seed=derive_seed(run_p.seed, "monitor/prior"))
    return {f"validation_{k}" if k != "n_images" else "n_validation_images": v for k, v in metrics.items()} | {
        "n_validation_classes": class_coverage(subset["labels"])["n_classes"],
        "loss_kind": p.loss, "final_train_loss": final_loss(history), "steps": history.height,
        "stop_reason": prior_model.meta["stop_reason"],
        "evaluations_during_training": len(prior_model.meta["quality_history"])}


def plot_prior_loss(history: pl.DataFrame):
    return plot_loss_history(history, "auxiliary prior model")

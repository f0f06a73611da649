"""The auxiliary prior model: encoder q(z|y) and decoder P_L(x|z), trained with the VGL + KL."""

from __future__ import annotations

from typing import Any

import polars as pl

from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.models import PriorConfig, PriorModel
import torch

from ledi_kedro.core.registry import TrainedModel
from ledi_kedro.core.subsets import class_coverage, seeded_rows
from ledi_kedro.core.tasks import encode_moments, prior_loss, prior_metrics
from ledi_kedro.params import parse, with_run
from ledi_kedro.pipelines.training import final_loss, history_frame, plot_loss_history, run_training


def train_prior_model(train_model_input: dict[str, Any], test_model_input: dict[str, Any], prior: dict,
                      run: dict) -> tuple[TrainedModel, pl.DataFrame]:
    """Train the prior; with ``prior.train.eval_every`` its held-out loss (on a seeded sample of
    ``eval_images`` test images) is measured during training and may stop it at its plateau."""
    run_p, p = parse("run", run), parse("prior", prior)
    images = train_model_input["images"]
    cfg = PriorConfig(in_channels=int(images.shape[1]), resolution=int(images.shape[-1]), z_dim=p.z_dim,
                      base_channels=p.base_channels, bottleneck=p.bottleneck, logvar_min=p.logvar_min,
                      logvar_max=p.logvar_max)
    train = with_run(p.train, run_p, offset=2)
    loss_cfg = {"loss": p.loss, "beta": p.beta, "beta_kl": p.beta_kl}
    monitor = None
    if train.eval_every:
        device, held_out = resolve_device(run_p.device), seeded_rows(test_model_input, p.eval_images, run_p.seed)

        def monitor(model, step):
            return prior_metrics(model, held_out["images"], p.loss, p.beta, device, seed=run_p.seed)["loss"]

    result = run_training("prior", lambda: PriorModel(cfg), prior_loss(p.loss, p.beta_kl, p.beta),
                          {"images": images}, train, run_p, {**cfg.to_dict(), **loss_cfg}, monitor)
    meta = loss_cfg | {"stop_reason": result.stop_reason,
                       "quality_history": [[e["step"], e["quality"]] for e in result.eval_history]}
    return TrainedModel("prior", cfg, result.model, result.ema, meta), history_frame(result)


def encode_prior_codes(prior_model: TrainedModel, train_model_input: dict[str, Any], run: dict) -> dict[str, torch.Tensor]:
    """Encoder moments (mu_z, logvar_z) of every training image under the frozen prior (EMA weights).

    Computed once; the latent sampler learns to produce these codes and LeDiFlow draws its
    training priors x0 from them.
    """
    mu, logvar = encode_moments(prior_model.inference, train_model_input["images"],
                                resolve_device(parse("run", run).device))
    return {"mu_z": mu, "logvar_z": logvar}


def evaluate_prior(prior_model: TrainedModel, test_model_input: dict[str, Any], history: pl.DataFrame,
                   prior: dict, run: dict) -> dict[str, Any]:
    """Held-out VGL, KL per z dimension, MSE of the prior mean and mean predicted std (EMA weights), on a
    seeded sample of ``eval_images`` test images."""
    run_p, p = parse("run", run), parse("prior", prior)
    subset = seeded_rows(test_model_input, p.eval_images, run_p.seed)
    metrics = prior_metrics(prior_model.inference, subset["images"], p.loss, p.beta,
                            resolve_device(run_p.device), seed=run_p.seed)
    return {f"test_{k}" if k != "n_images" else "n_test_images": v for k, v in metrics.items()} | {
        "n_test_classes": class_coverage(subset["labels"])["n_classes"],
        "loss_kind": p.loss, "final_train_loss": final_loss(history), "steps": history.height,
        "stop_reason": prior_model.meta.get("stop_reason", "step_cap"),
        "evaluations_during_training": len(prior_model.meta.get("quality_history", []))}


def plot_prior_loss(history: pl.DataFrame):
    return plot_loss_history(history, "auxiliary prior model")

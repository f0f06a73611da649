"""The training steps shared by the pipelines (and by ``tune``, which chains them on its own):
running the Trainer under the project's checkpoint policy, each trained part's step (prior, latent
sampler, flow model), and loss histories as tables and plots. Pipelines import from here, never
from each other."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # nodes render to files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from ledi_kedro.core.config import from_dict  # noqa: E402
from ledi_kedro.core.artifacts import TrainedModel, make_sampler  # noqa: E402
from ledi_kedro.core.checkpoint import CheckpointError  # noqa: E402
from ledi_kedro.core.data.tensors import as_float  # noqa: E402
from ledi_kedro.core.distributed import barrier, dist_info, resolve_device  # noqa: E402
from ledi_kedro.core.embedders import build_embedder  # noqa: E402
from ledi_kedro.core.encoding import encode_moments  # noqa: E402
from ledi_kedro.core.evaluation import flow_quality_monitor  # noqa: E402
from ledi_kedro.core.metrics.model_quality import prior_metrics  # noqa: E402
from ledi_kedro.core.models import DiT, LatentFlow, PriorModel  # noqa: E402
from ledi_kedro.core.objectives import (  # noqa: E402
    fm_gaussian_prior_loss, fm_learned_prior_loss, latent_flow_loss, prior_loss,
)
from ledi_kedro.core.subsets import seeded_rows  # noqa: E402
from ledi_kedro.core.trainer import EvaluateFn, LossFn, TrainConfig, Trainer, TrainResult  # noqa: E402
from ledi_kedro.params import FMParams, FMVariant, RunParams, parse, with_run  # noqa: E402

log = logging.getLogger(__name__)


def run_training(name: str, make_model: Callable[[], nn.Module], loss_fn: LossFn, data: dict[str, torch.Tensor],
                 train: TrainConfig, run: RunParams, model_config: dict[str, Any],
                 evaluate_fn: EvaluateFn | None = None) -> TrainResult:
    """Train (or resume, or skip when finished) with checkpoints in ``run.checkpoint_root/name``.

    When the settings, the data or the code changed since the checkpoints were written (or they
    went past ``steps``, or they no longer load), ``run.on_config_change`` decides: ``restart``
    deletes them and trains afresh, ``error`` stops and says what changed.
    """
    ckpt_dir = Path(run.checkpoint_root) / name

    def fit() -> TrainResult:
        torch.manual_seed(train.seed)  # the same initial weights for the same seed
        return Trainer(make_model(), loss_fn, data, train, checkpoint_dir=ckpt_dir, model_config=model_config,
                       name=name, evaluate_fn=evaluate_fn).fit()

    try:
        return fit()
    except CheckpointError as exc:  # stale, or unreadable (truncated, or no longer fits the model)
        if run.on_config_change != "restart":
            raise
        log.warning("%s; run.on_config_change=restart: deleting %s and training from scratch", exc, ckpt_dir)
        if dist_info().is_main:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        barrier()
        return fit()


def history_frame(result: TrainResult) -> pl.DataFrame:
    """One row per training step: step, loss."""
    return pl.DataFrame({"step": list(range(1, len(result.loss_history) + 1)), "loss": result.loss_history},
                        schema={"step": pl.Int64, "loss": pl.Float64})


def empty_history() -> pl.DataFrame:
    return pl.DataFrame(schema={"step": pl.Int64, "loss": pl.Float64})


def plot_loss_history(history: pl.DataFrame, title: str) -> Figure:
    """Per-step loss (faint) and its moving average, log-scaled."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
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


# ---------------------------------------------------------------- the trained parts' steps
QUALITY_SCHEMA = {"step": pl.Int64, "quality": pl.Float64, "seconds": pl.Float64}


def train_prior_model(train_model_input: dict[str, Any], test_model_input: dict[str, Any], prior: dict,
                      run: dict) -> tuple[TrainedModel, pl.DataFrame]:
    """Train the prior; with ``prior.train.eval_every`` its held-out loss (on a seeded sample of
    ``eval_images`` test images) is measured during training and may stop it at its plateau."""
    run_p, p = parse("run", run), parse("prior", prior)
    images = train_model_input["images"]
    cfg = replace(p.model, in_channels=int(images.shape[1]), resolution=int(images.shape[-1]))
    train = with_run(p.train, run_p, offset=2)
    loss_cfg = {"loss": p.loss, "beta": p.beta, "beta_kl": p.beta_kl}
    monitor: EvaluateFn | None = None
    if train.eval_every:
        device, held_out = resolve_device(run_p.device), seeded_rows(test_model_input, p.eval_images, run_p.seed)

        def held_out_loss(model, step):
            return prior_metrics(model, held_out["images"], p.loss, p.beta, device, seed=run_p.seed)["loss"]

        monitor = held_out_loss

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


def train_latent_flow_model(prior_codes: dict[str, torch.Tensor], latent_flow: dict,
                            run: dict) -> tuple[TrainedModel, pl.DataFrame]:
    """The latent sampler: flow matching from w ~ N(0, I) to the prior encoder's codes."""
    run_p, p = parse("run", run), parse("latent_flow", latent_flow)
    cfg = replace(p.model, z_dim=int(prior_codes["mu_z"].shape[1]))
    train = with_run(p.train, run_p, offset=3)
    meta = {"time_sampler": p.time_sampler, "sample_steps": p.sample_steps, "sample_solver": p.sample_solver}
    codes = {"mu_z": prior_codes["mu_z"], "logvar_z": prior_codes["logvar_z"]}
    result = run_training("latent_flow", lambda: LatentFlow(cfg), latent_flow_loss(p.time_sampler), codes,
                          train, run_p, {**cfg.to_dict(), "time_sampler": p.time_sampler})
    return TrainedModel("latent_flow", cfg, result.model, result.ema, meta), history_frame(result)


def _fm_monitor(p: FMParams, v: FMVariant, run_p: RunParams, cfg, meta: dict[str, Any], prior_model,
                latent_flow_model, autoencoder_model, quality_embedder, test_image_tensors) -> EvaluateFn | None:
    """FD at ``variant.monitor_nfe`` on the judge's features, or None when ``fm.train.eval_every`` is 0."""
    if not p.train.eval_every:
        return None
    device = resolve_device(run_p.device)
    learned = v.prior == "learned"

    def sampler_for(ema):
        fm = TrainedModel("dit", cfg, None, ema, meta)
        return make_sampler(fm, prior_model if learned else None, latent_flow_model if learned else None,
                            autoencoder_model, device, precision="bf16")

    reference = as_float(seeded_rows(test_image_tensors, p.monitor.n_reference, run_p.seed)["images"])
    return flow_quality_monitor(sampler_for, build_embedder(quality_embedder, device), reference, p.monitor.n_samples,
                                v.monitor_nfe, p.monitor.solver, p.monitor.batch_size, seed=run_p.seed)


def train_fm_model(train_model_input: dict[str, Any], prior_model: TrainedModel, prior_codes: dict[str, Any],
                   latent_flow_model: TrainedModel, autoencoder_model: TrainedModel, quality_embedder: TrainedModel,
                   test_image_tensors: dict[str, Any], fm: dict, variant: dict,
                   run: dict) -> tuple[TrainedModel, pl.DataFrame, pl.DataFrame]:
    """The image flow model from the learned prior (LeDiFlow) or from N(0, I) (baseline): same backbone,
    schedule and budget for both variants; only x0's distribution differs. With ``fm.train.eval_every``
    the quality is measured during training (and may stop it at its plateau)."""
    run_p, p = parse("run", run), parse("fm", fm)
    v = from_dict(FMVariant, variant, "variant")
    images = train_model_input["images"]
    cfg = replace(p.model, in_channels=int(images.shape[1]), resolution=int(images.shape[-1]))
    train = with_run(p.train, run_p, offset=4)  # the same seed for both variants: same init, same batches
    data = {"images": images}
    if v.prior == "learned":
        prior = prior_model.inference.to(resolve_device(run_p.device))
        data["mu_z"], data["logvar_z"] = prior_codes["mu_z"], prior_codes["logvar_z"]
        loss = fm_learned_prior_loss(prior, p.prior_noise_scale, p.time_sampler)
    else:
        loss = fm_gaussian_prior_loss(p.time_sampler)
    meta = {"prior": v.prior, "name": v.name, "time_sampler": p.time_sampler,
            "prior_noise_scale": p.prior_noise_scale, "space": train_model_input.get("__metadata__", {}).get("space")}
    monitor = _fm_monitor(p, v, run_p, cfg, meta, prior_model, latent_flow_model, autoencoder_model, quality_embedder,
                          test_image_tensors)
    result = run_training(v.name, lambda: DiT(cfg), loss, data, train, run_p, {**cfg.to_dict(), **meta}, monitor)
    meta = meta | {"stop_reason": result.stop_reason, "steps": result.steps}
    quality = pl.DataFrame(result.eval_history, schema=QUALITY_SCHEMA)
    return TrainedModel("dit", cfg, result.model, result.ema, meta), history_frame(result), quality

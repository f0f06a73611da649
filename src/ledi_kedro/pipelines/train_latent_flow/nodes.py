"""The latent sampler: flow matching from w ~ N(0, I) to the frozen encoder's codes z."""

from __future__ import annotations

from typing import Any

import polars as pl
import torch

from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.models import LatentFlow, LatentFlowConfig
from ledi_kedro.core.registry import TrainedModel
from ledi_kedro.core.solvers import integrate
from ledi_kedro.core.subsets import seeded_rows
from ledi_kedro.core.tasks import latent_flow_loss
from ledi_kedro.params import parse, with_run
from ledi_kedro.pipelines.training import final_loss, history_frame, plot_loss_history, run_training


def train_latent_flow_model(prior_codes: dict[str, torch.Tensor], latent_flow: dict,
                            run: dict) -> tuple[TrainedModel, pl.DataFrame]:
    run_p, p = parse("run", run), parse("latent_flow", latent_flow)
    cfg = LatentFlowConfig(z_dim=int(prior_codes["mu_z"].shape[1]), hidden=p.hidden, depth=p.depth)
    train = with_run(p.train, run_p, offset=3)
    meta = {"time_sampler": p.time_sampler, "sample_steps": p.sample_steps, "sample_solver": p.sample_solver}
    codes = {"mu_z": prior_codes["mu_z"], "logvar_z": prior_codes["logvar_z"]}
    result = run_training("latent_flow", lambda: LatentFlow(cfg), latent_flow_loss(p.time_sampler), codes,
                          train, run_p, {**cfg.to_dict(), "time_sampler": p.time_sampler})
    return TrainedModel("latent_flow", cfg, result.model, result.ema, meta), history_frame(result)


@torch.no_grad()
def evaluate_latent_flow(latent_flow_model: TrainedModel, prior_codes: dict[str, torch.Tensor],
                         history: pl.DataFrame, latent_flow: dict, run: dict) -> dict[str, Any]:
    """Moments of sampled z against the encoder's codes (both should be near N(0, I)-ish and alike)."""
    run_p, p = parse("run", run), parse("latent_flow", latent_flow)
    device = resolve_device(run_p.device)
    model = latent_flow_model.inference.to(device)
    sample = seeded_rows({"mu_z": prior_codes["mu_z"], "logvar_z": prior_codes["logvar_z"]}, 4096, run_p.seed)
    n = int(sample["mu_z"].shape[0])
    g = torch.Generator(device=device).manual_seed(run_p.seed)
    w = torch.randn((n, model.config.z_dim), generator=g, device=device)
    z = integrate(lambda x, t: model(x, t.expand(x.shape[0])), w, solver=p.sample_solver, steps=p.sample_steps).x.cpu()
    codes = sample["mu_z"] + torch.exp(0.5 * sample["logvar_z"]) * torch.randn(
        n, model.config.z_dim, generator=torch.Generator().manual_seed(run_p.seed))
    return {
        "final_train_loss": final_loss(history), "steps": history.height, "n_samples": n,
        "mean_abs_error_of_z_mean": float((z.mean(0) - codes.mean(0)).abs().mean()),
        "mean_abs_error_of_z_std": float((z.std(0) - codes.std(0)).abs().mean()),
        "codes_std": float(codes.std(0).mean()), "samples_std": float(z.std(0).mean()),
    }


def plot_latent_flow_loss(history: pl.DataFrame):
    return plot_loss_history(history, "latent sampler")

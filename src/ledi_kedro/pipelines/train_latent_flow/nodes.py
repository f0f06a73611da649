"""The latent sampler: flow matching from w ~ N(0, I) to the frozen encoder's codes z (the training
step itself, shared with ``tune``, is :func:`ledi_kedro.training_nodes.train_latent_flow_model`)."""

from __future__ import annotations

from typing import Any

import polars as pl
import torch

from ledi_kedro.core.artifacts import TrainedModel
from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.models import reparameterize
from ledi_kedro.core.generation import integrate_latent
from ledi_kedro.core.subsets import derive_seed, seeded_rows
from ledi_kedro.params import parse
from ledi_kedro.training_nodes import final_loss, plot_loss_history


@torch.no_grad()
def evaluate_latent_flow(latent_flow_model: TrainedModel, prior_codes: dict[str, torch.Tensor],
                         history: pl.DataFrame, latent_flow: dict, run: dict) -> dict[str, Any]:
    """Moments of sampled z against the encoder's codes (both should be near N(0, I)-ish and alike)."""
    run_p, p = parse("run", run), parse("latent_flow", latent_flow)
    device = resolve_device(run_p.device)
    model = latent_flow_model.inference.to(device)
    seed = derive_seed(run_p.seed, "latent_flow_metrics")
    sample = seeded_rows({"mu_z": prior_codes["mu_z"], "logvar_z": prior_codes["logvar_z"]}, 4096, seed)
    n = int(sample["mu_z"].shape[0])
    g = torch.Generator(device=device).manual_seed(seed)
    w = torch.randn((n, model.config.z_dim), generator=g, device=device)
    z = integrate_latent(model, w, p.sample_solver, p.sample_steps)[0].cpu()
    eps = torch.randn(n, model.config.z_dim, generator=torch.Generator().manual_seed(seed + 1))
    codes = reparameterize(sample["mu_z"], sample["logvar_z"], eps)
    return {
        "final_train_loss": final_loss(history), "steps": history.height, "n_samples": n,
        "mean_abs_error_of_z_mean": float((z.mean(0) - codes.mean(0)).abs().mean()),
        "mean_abs_error_of_z_std": float((z.std(0) - codes.std(0)).abs().mean()),
        "codes_std": float(codes.std(0).mean()), "samples_std": float(z.std(0).mean()),
    }


def plot_latent_flow_loss(history: pl.DataFrame):
    return plot_loss_history(history, "latent sampler")

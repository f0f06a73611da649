"""The image flow model, from the learned prior (LeDiFlow) or from N(0, I) (baseline)."""

from __future__ import annotations

from typing import Any

import polars as pl

from ledi_kedro.core.config import from_dict
from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.models import DiT, DiTConfig
from ledi_kedro.core.registry import TrainedModel
from ledi_kedro.core.tasks import fm_gaussian_prior_loss, fm_learned_prior_loss
from ledi_kedro.params import FMVariant, parse, with_run
from ledi_kedro.pipelines.training import final_loss, history_frame, plot_loss_history, run_training


def train_fm_model(train_model_input: dict[str, Any], prior_model: TrainedModel, prior_codes: dict[str, Any],
                   fm: dict, variant: dict, run: dict) -> tuple[TrainedModel, pl.DataFrame]:
    """Same backbone, schedule and budget for both variants; only x0's distribution differs."""
    run_p, p = parse("run", run), parse("fm", fm)
    v = from_dict(FMVariant, variant, "variant")
    images = train_model_input["images"]
    cfg = DiTConfig(in_channels=int(images.shape[1]), resolution=int(images.shape[-1]), size=p.model.size,
                    patch_size=p.model.patch_size, pos_embed=p.model.pos_embed, mlp_ratio=p.model.mlp_ratio)
    train = with_run(p.train, run_p, offset=4)  # the same seed for both variants: same init, same batches
    data = {"images": images}
    if v.prior == "learned":
        device = resolve_device(run_p.device)
        prior = prior_model.inference.to(device)
        data["mu_z"], data["logvar_z"] = prior_codes["mu_z"], prior_codes["logvar_z"]
        loss = fm_learned_prior_loss(prior, p.prior_noise_scale, p.time_sampler)
    else:
        loss = fm_gaussian_prior_loss(p.time_sampler)
    meta = {"prior": v.prior, "name": v.name, "time_sampler": p.time_sampler,
            "prior_noise_scale": p.prior_noise_scale, "space": train_model_input.get("__metadata__", {}).get("space")}
    result = run_training(v.name, lambda: DiT(cfg), loss, data, train, run_p, {**cfg.to_dict(), **meta})
    return TrainedModel("dit", cfg, result.model, result.ema, meta), history_frame(result)


def summarize_fm(history: pl.DataFrame, variant: dict) -> dict[str, Any]:
    v = from_dict(FMVariant, variant, "variant")
    return {"prior": v.prior, "final_train_loss": final_loss(history), "steps": history.height}


def plot_fm_loss(history: pl.DataFrame, variant: dict):
    v = from_dict(FMVariant, variant, "variant")
    return plot_loss_history(history, f"flow model ({v.prior} prior)")

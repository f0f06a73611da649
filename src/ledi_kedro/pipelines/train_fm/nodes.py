"""The image flow model, from the learned prior (LeDiFlow) or from N(0, I) (baseline)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ledi_kedro.core.config import from_dict  # noqa: E402
from ledi_kedro.core.distributed import resolve_device  # noqa: E402
from ledi_kedro.core.embedders import build_embedder  # noqa: E402
from ledi_kedro.core.evaluation import flow_quality_monitor  # noqa: E402
from ledi_kedro.core.models import DiT, DiTConfig  # noqa: E402
from ledi_kedro.core.registry import TrainedModel  # noqa: E402
from ledi_kedro.core.subsets import seeded_rows  # noqa: E402
from ledi_kedro.core.system import make_sampler  # noqa: E402
from ledi_kedro.core.tasks import as_float, fm_gaussian_prior_loss, fm_learned_prior_loss  # noqa: E402
from ledi_kedro.params import FMParams, FMVariant, RunParams, parse, with_run  # noqa: E402
from ledi_kedro.pipelines.training import final_loss, history_frame, plot_loss_history, run_training  # noqa: E402

QUALITY_SCHEMA = {"step": pl.Int64, "quality": pl.Float64, "seconds": pl.Float64}


def _monitor(p: FMParams, v: FMVariant, run_p: RunParams, cfg: DiTConfig, meta: dict[str, Any], prior_model,
             latent_flow_model, autoencoder_model, quality_embedder, test_image_tensors):
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
    """Same backbone, schedule and budget for both variants; only x0's distribution differs. With
    ``fm.train.eval_every`` the quality is measured during training (and may stop it at its plateau)."""
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
    monitor = _monitor(p, v, run_p, cfg, meta, prior_model, latent_flow_model, autoencoder_model, quality_embedder,
                       test_image_tensors)
    result = run_training(v.name, lambda: DiT(cfg), loss, data, train, run_p, {**cfg.to_dict(), **meta}, monitor)
    meta = meta | {"stop_reason": result.stop_reason, "steps": result.steps}
    quality = pl.DataFrame(result.eval_history, schema=QUALITY_SCHEMA)
    return TrainedModel("dit", cfg, result.model, result.ema, meta), history_frame(result), quality


def summarize_fm(history: pl.DataFrame, quality_history: pl.DataFrame, fm: dict, variant: dict) -> dict[str, Any]:
    """Training figures, and whether the quality reached its plateau or training hit the step cap."""
    p, v = parse("fm", fm), from_dict(FMVariant, variant, "variant")
    out: dict[str, Any] = {"prior": v.prior, "final_train_loss": final_loss(history), "steps": history.height,
                           "step_cap": p.train.steps}
    if quality_history.height:
        from ledi_kedro.core.trainer import plateau_reached

        values = quality_history["quality"].to_list()
        at_plateau = plateau_reached(values, p.train.plateau_patience, p.train.plateau_min_rel_improvement)
        out |= {"monitor": f"fd at NFE {v.monitor_nfe} ({p.monitor.solver}), {p.monitor.n_samples} samples",
                "final_quality": values[-1], "best_quality": min(values), "evaluations": len(values),
                "plateau_reached": at_plateau, "stop_reason": "plateau" if at_plateau else "step_cap"}
    return out


def plot_fm_loss(history: pl.DataFrame, variant: dict):
    v = from_dict(FMVariant, variant, "variant")
    return plot_loss_history(history, f"flow model ({v.prior} prior)")


def plot_training_quality(ledi: pl.DataFrame, gaussian: pl.DataFrame, ledi_variant: dict,
                          gaussian_variant: dict) -> Figure:
    """Quality (FD, judge features) against training step for both flow models."""
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for frame, variant, style in ((ledi, ledi_variant, "o-"), (gaussian, gaussian_variant, "s--")):
        v = from_dict(FMVariant, variant, "variant")
        if frame.height:
            ax.plot(frame["step"].to_list(), frame["quality"].to_list(), style,
                    label=f"{'LeDiFlow' if v.prior == 'learned' else 'Gaussian'} (NFE {v.monitor_nfe})")
    if ledi.height or gaussian.height:
        ax.set_yscale("log")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "quality not monitored (fm.train.eval_every: 0)", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("training step")
    ax.set_ylabel("FD (judge features)")
    ax.set_title("quality during training")
    fig.tight_layout()
    return fig

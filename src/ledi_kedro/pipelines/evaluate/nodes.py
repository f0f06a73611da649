"""Thin nodes over :mod:`ledi_kedro.steps.evaluation` (the functions the GPU check calls too): each parses
its YAML sections, calls its step and turns rows into tables; plus the plots."""

from __future__ import annotations

import logging
from typing import Any

import polars as pl
import torch
from matplotlib.figure import Figure  # figures without pyplot: nodes render to files, never to a window

from ledi_kedro.core.artifacts import GeneratorArtifact, TrainedModel
from ledi_kedro.core.data.tensors import as_float, image_grid
from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.subsets import seeded_rows
from ledi_kedro.core.config import from_dict
from ledi_kedro.params import EvaluateParams, FMVariant, parse, resolve_evaluate
from ledi_kedro.steps import evaluation as steps
from ledi_kedro.steps.evaluation import FLOOR, MODELS, ReferenceSet
from ledi_kedro.steps.training import model_input


log = logging.getLogger(__name__)


def _params(evaluate: dict, run: dict) -> EvaluateParams:
    """The evaluation's parameters, its seed resolved from ``run.seed`` unless ``evaluate.seed`` pins it."""
    return resolve_evaluate(parse("evaluate", evaluate), parse("run", run))


def encode_test_split(ledi_generator: GeneratorArtifact, test_image_tensors: dict[str, Any],
                      run: dict) -> dict[str, Any]:
    """The test split in the models' space (latents in latent space, the images in pixel space), through the
    generator's own autoencoder: encoded here, by the evaluation, its only reader
    (:func:`ledi_kedro.steps.training.model_input`)."""
    return model_input(ledi_generator.autoencoder, test_image_tensors, parse("run", run))


def embed_reference(quality_embedder: TrainedModel, train_image_tensors: dict[str, Any],
                    test_image_tensors: dict[str, Any], ledi_generator: GeneratorArtifact,
                    test_model_input: dict[str, Any], evaluate: dict, run: dict) -> ReferenceSet:
    """The judge's features of every real set the evaluation uses, with the generator's autoencoder's
    reconstructions in latent space (:func:`ledi_kedro.steps.evaluation.reference_set`)."""
    return steps.reference_set(quality_embedder, train_image_tensors, test_image_tensors, _params(evaluate, run),
                               parse("run", run), ledi_generator.autoencoder, test_model_input)


def sweep_quality(ledi_generator: GeneratorArtifact, gaussian_generator: GeneratorArtifact,
                  quality_embedder: TrainedModel, reference_features: ReferenceSet, evaluate: dict,
                  run: dict) -> tuple[dict[str, Any], dict]:
    """Both models x solvers x NFE, the sanity rows and each point's memorisation fields
    (:func:`ledi_kedro.steps.evaluation.sweep_points`)."""
    return steps.sweep_points(ledi_generator, gaussian_generator, quality_embedder, reference_features,
                              _params(evaluate, run), parse("run", run), progress=log.info)


SWEEP_SCHEMA = {"nfe_requested": pl.Int64, "rtol": pl.Float64, "seconds_per_image": pl.Float64,
                "x0_seconds_per_image": pl.Float64, "nn_close_fraction": pl.Float64,
                "nn_pixels_close_fraction": pl.Float64, "nn_pixels_train_median": pl.Float64,
                "nn_n_held_out": pl.Int64}


def error_bars(sweep_points: dict[str, Any], reference_features: ReferenceSet, evaluate: dict,
               run: dict) -> pl.DataFrame:
    """The sweep table with paired half-sample intervals (:func:`ledi_kedro.steps.evaluation.with_intervals`)."""
    ev = _params(evaluate, run)
    rows = steps.with_intervals(sweep_points, reference_features, ev)
    return pl.DataFrame(rows, schema_overrides=SWEEP_SCHEMA | {f"{ev.primary_metric}_seed_std": pl.Float64},
                        infer_schema_length=None)


def sweep_latent_sampler(ledi_generator: GeneratorArtifact, quality_embedder: TrainedModel,
                         train_model_input: dict[str, Any], test_model_input: dict[str, Any],
                         reference_features: ReferenceSet, evaluate: dict, run: dict) -> pl.DataFrame:
    """LeDiFlow's start against the image NFE: the latent sampler's settings and the encoder-code rows
    (:func:`ledi_kedro.steps.evaluation.latent_sampler_points`)."""
    ev = _params(evaluate, run)
    rows = steps.latent_sampler_points(ledi_generator, quality_embedder, train_model_input, test_model_input,
                                       reference_features, ev, parse("run", run))
    schema = {"sample_solver": pl.String, "sample_steps": pl.Int64, "latent_nfe": pl.Float64, "configured": pl.Boolean,
              "image_nfe": pl.Int64, "image_solver": pl.String, ev.primary_metric: pl.Float64, "n_samples": pl.Int64,
              "ms_per_image": pl.Float64, "x0_ms_per_image": pl.Float64, "x0_fraction": pl.Float64,
              f"{ev.primary_metric}_low": pl.Float64, f"{ev.primary_metric}_high": pl.Float64,
              f"{ev.primary_metric}_replicates": pl.List(pl.Float64)}
    return pl.DataFrame(rows, schema=schema)


def measure_straightness(ledi_generator: GeneratorArtifact, gaussian_generator: GeneratorArtifact, evaluate: dict,
                         run: dict) -> dict[str, float]:
    """Mean ||v(x_t, t) - (x1 - x0)||^2 along each model's Euler trajectories (0 = straight)."""
    return steps.flow_straightness(ledi_generator, gaussian_generator, _params(evaluate, run), parse("run", run))


def summarize(sweep_results: pl.DataFrame, straightness_values: dict[str, float], embedder_metrics: dict[str, Any],
              reference_features: ReferenceSet, ledi_fm_metrics: dict[str, Any], gaussian_fm_metrics: dict[str, Any],
              latent_sampler_sweep: pl.DataFrame, evaluate: dict, run: dict) -> tuple[dict[str, Any], pl.DataFrame]:
    """DVC metrics (metrics.json) and the per-solver speedup table (:func:`ledi_kedro.steps.evaluation.summarize`)."""
    out = steps.summarize(sweep_results.to_dicts(), latent_sampler_sweep.to_dicts(), straightness_values,
                          embedder_metrics, reference_features, ledi_fm_metrics, gaussian_fm_metrics,
                          _params(evaluate, run))
    schema = {"solver": pl.String, "reference": pl.String, "reference_nfe": pl.Float64, "reference_quality": pl.Float64,
              "status": pl.String, "matched_nfe": pl.Float64, "speedup": pl.Float64, "speedup_text": pl.String,
              "wallclock_speedup": pl.Float64, "wallclock_text": pl.String, "ledi_ms_per_image": pl.Float64,
              "ledi_x0_ms_per_image": pl.Float64, "baseline_ms_per_image": pl.Float64}
    return out.metrics, pl.DataFrame(out.speedups, schema=schema)


def plot_training_quality(ledi: pl.DataFrame, gaussian: pl.DataFrame, ledi_variant: dict,
                          gaussian_variant: dict) -> Figure:
    """Quality (FD, judge features) against training step for both flow models."""
    fig = Figure(figsize=(6, 3.6), dpi=100)
    ax = fig.subplots()
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


def plot_quality_vs_nfe(sweep_results: pl.DataFrame, evaluate: dict) -> Figure:
    """Quality against NFE per solver, with each point's interval, and the real-vs-real floor as a band. The
    adaptive solver's points sit at the NFE it actually spent, labelled with their tolerance. Log axes are
    limited to the data (an interval that reaches 0 does not stretch them to 1e-14)."""
    ev = parse("evaluate", evaluate)  # no seed used
    metric = ev.primary_metric
    solvers = [s for s in sweep_results["solver"].unique(maintain_order=True).to_list() if s != "none"]
    fig = Figure(figsize=(4.5 * len(solvers), 3.6), dpi=100)
    axes = fig.subplots(1, len(solvers), squeeze=False)
    floor = sweep_results.filter(pl.col("model") == FLOOR)
    for ax, solver in zip(axes[0], solvers):
        shown = []
        for model, style in (("ledi", "o-"), ("gaussian", "s--")):
            c = sweep_results.filter((pl.col("model") == model) & (pl.col("solver") == solver)).sort("nfe")
            q = c[metric].to_numpy()
            err = [q - c[f"{metric}_low"].to_numpy(), c[f"{metric}_high"].to_numpy() - q]
            ax.errorbar(c["nfe"].to_list(), q, yerr=err, fmt=style, capsize=3, ms=4,
                        label="LeDiFlow" if model == "ledi" else "Gaussian")
            if solver == "dopri5":
                for n, v, rtol in zip(c["nfe"], q, c["rtol"]):
                    ax.annotate(f"rtol {rtol:g}", (n, v), textcoords="offset points", xytext=(4, 4), fontsize=7)
            shown += [*q, *c[f"{metric}_low"].to_list(), *c[f"{metric}_high"].to_list()]
        if floor.height:
            r = floor.row(0, named=True)
            ax.axhline(r[metric], color="grey", lw=0.8, ls=":", label="real vs real (floor)")
            ax.axhspan(r[f"{metric}_low"], r[f"{metric}_high"], color="grey", alpha=0.15, lw=0)
            shown += [r[metric], r[f"{metric}_high"]]
        positive = [v for v in shown if v > 0]
        ax.set_xscale("log", base=2)
        if solver == "dopri5":  # a few points at whatever NFE the tolerance cost: ticks there, not at powers of 2
            spent = sorted(set(sweep_results.filter(pl.col("solver") == solver)["nfe"].to_list()))
            ax.set_xlim(min(spent) / 1.5, max(spent) * 1.5)
            ax.set_xticks(spent, [f"{n:g}" for n in spent])
        if positive:
            ax.set_yscale("log")
            ax.set_ylim(min(positive) / 1.5, max(positive) * 1.5)
        ax.set_xlabel("NFE spent (image flow)" if solver == "dopri5" else "NFE (image flow)")
        ax.set_ylabel(f"{metric} ({sweep_results['embedder'][0]}), {round(100 * ev.bootstrap.confidence)}% intervals")
        ax.set_title(f"{solver} (adaptive)" if solver == "dopri5" else solver)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _grid(ax, images: torch.Tensor, title: str = "") -> None:
    """One row of images (in [-1, 1]) into a matplotlib axis."""
    row = image_grid(images, pad=1)
    ax.imshow(row, cmap="gray" if row.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8, loc="left")


def plot_sample_grids(sweep_examples: dict, evaluate: dict) -> Figure:
    """LeDiFlow (left) and the baseline (right) side by side, one row per NFE of ``grid_nfe`` that the sweep
    has for ``grid_solver``, ``grid_images`` samples each (the same seeds in every row)."""
    ev = parse("evaluate", evaluate)  # no seed used
    nfes = [n for n in ev.grid_nfe if all((m, ev.grid_solver, float(n)) in sweep_examples for m in MODELS)]
    fig = Figure(figsize=(2 * (ev.grid_images * 0.8 + 0.5), 0.95 * len(nfes) + 0.6), dpi=100)
    axes = fig.subplots(max(1, len(nfes)), 2, squeeze=False)
    for row, n in zip(axes, nfes):
        for ax, model in zip(row, MODELS):
            _grid(ax, sweep_examples[(model, ev.grid_solver, float(n))][: ev.grid_images],
                  f"{'LeDiFlow' if model == 'ledi' else 'Gaussian'}, {ev.grid_solver} NFE {n}")
    if not nfes:
        axes[0, 0].text(0.5, 0.5, f"no {ev.grid_solver} points at NFE {ev.grid_nfe}", ha="center", va="center")
        for ax in axes[0]:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_applications(ledi_generator: GeneratorArtifact, gaussian_generator: GeneratorArtifact,
                      test_model_input: dict[str, Any], evaluate: dict, run: dict) -> tuple[Figure, Figure, Figure]:
    """Prior samples (mean and x0), an interpolation strip and inpainting examples."""
    ev, run_p = _params(evaluate, run), parse("run", run)
    device = resolve_device(run_p.device)
    s = steps.generators(ledi_generator, gaussian_generator, device)
    ledi, gauss = s["ledi"], s["gaussian"]
    n, nfe = ev.grid_images, 2 * max(4, ev.reference_nfe // 8)
    finish = ledi.to_images
    fig_p = Figure(figsize=(n * 0.8 + 1, 3.2), dpi=100)
    ax = fig_p.subplots(3, 1)
    _grid(ax[0], finish(ledi.prior_mean(n, ev.seed)), "prior mean mu(z)")
    x0 = ledi.draw(n, solver="midpoint", nfe=nfe, seed=ev.seed).x0  # as the row below starts (its warmth, if any)
    _grid(ax[1], finish(x0), "prior sample x0 = mu + s sigma eps")
    _grid(ax[2], ledi.sample(n, nfe=nfe, solver="midpoint", seed=ev.seed).images, f"LeDiFlow, NFE {nfe}")
    fig_p.tight_layout()
    fig_i = Figure(figsize=(ev.interpolation_points * 0.8 + 1, 3.2), dpi=100)
    ax = fig_i.subplots(3, 1)
    k = ev.interpolation_points
    _grid(ax[0], ledi.interpolate(ev.seed, ev.seed + 1, k, space="w", nfe=nfe, solver="midpoint").images,
          "LeDiFlow: slerp in w (shared eps)")
    _grid(ax[1], ledi.interpolate(ev.seed, ev.seed + 1, k, space="z", nfe=nfe, solver="midpoint").images,
          "LeDiFlow: lerp in z (shared eps)")
    _grid(ax[2], gauss.interpolate(ev.seed, ev.seed + 1, k, nfe=nfe, solver="midpoint").images,
          "Gaussian baseline: slerp of the noise")
    fig_i.tight_layout()
    m = ev.inpaint_examples
    known = as_float(seeded_rows(test_model_input, m, ev.seed)["images"]).to(device)
    mask = torch.zeros_like(known[:1])
    mask[..., : known.shape[-1] // 2] = 1  # left half known
    fig_n = Figure(figsize=(m * 0.8 + 1, 4.2), dpi=100)
    ax = fig_n.subplots(4, 1)
    _grid(ax[0], finish(known), "original")
    _grid(ax[1], finish(known * mask), "known (left half)")
    _grid(ax[2], ledi.inpaint(known, mask, nfe=nfe, solver="midpoint", seed=ev.seed).images, "LeDiFlow inpainting")
    _grid(ax[3], gauss.inpaint(known, mask, nfe=nfe, solver="midpoint", seed=ev.seed).images, "Gaussian inpainting")
    fig_n.tight_layout()
    return fig_p, fig_i, fig_n

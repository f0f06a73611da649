"""Thin nodes over core.evaluation and core.metrics (distances, intervals, comparison)."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ledi_kedro.core.metrics.comparison import (  # noqa: E402
    Curve, PointWithInterval, compare, paired_difference, reliability_warnings,
)
from ledi_kedro.core.distributed import resolve_device  # noqa: E402
from ledi_kedro.core.embedders import build_embedder  # noqa: E402
from ledi_kedro.core.evaluation import (  # noqa: E402
    QualitySpec, SweepConfig, generate_and_embed, prior_only_features, quality, sweep,
)
from ledi_kedro.core.metrics import median_heuristic_sigma  # noqa: E402
from ledi_kedro.core.artifacts import TrainedModel, make_sampler  # noqa: E402
from ledi_kedro.core.metrics.model_quality import straightness  # noqa: E402
from ledi_kedro.core.data.tensors import as_float, image_grid  # noqa: E402
from ledi_kedro.core.subsets import class_coverage, seeded_rows  # noqa: E402
from ledi_kedro.core.metrics.intervals import MIN_ROWS, Interval, QualityBootstrap  # noqa: E402
from ledi_kedro.params import EvaluateParams, parse  # noqa: E402

log = logging.getLogger(__name__)
MODELS = ("ledi", "gaussian")
FLOOR, PRIOR_ONLY, NOISE = "real_train", "prior_x0", "gaussian_noise"
SANITY = (FLOOR, PRIOR_ONLY, NOISE)


def _params(evaluate: dict) -> EvaluateParams:
    return parse("evaluate", evaluate)


def embed_reference(quality_embedder: TrainedModel, train_image_tensors: dict[str, Any],
                    test_image_tensors: dict[str, Any], evaluate: dict, run: dict) -> dict[str, Any]:
    """Reference features (a seeded sample of ``n_reference`` held-out test images), the real-vs-real
    set (a seeded sample of ``n_samples`` train images: the size of a generated point) and the MMD
    bandwidth: 10 for CLIP (CMMD), else the median heuristic fixed once on the reference."""
    ev, run_p = _params(evaluate), parse("run", run)
    embed = build_embedder(quality_embedder, resolve_device(run_p.device))
    test = seeded_rows(test_image_tensors, ev.n_reference, ev.seed)
    train = seeded_rows(train_image_tensors, ev.n_samples, ev.seed + 1)
    for split, rows in (("test", test), ("train", train)):
        if rows["images"].shape[0] < MIN_ROWS:
            raise ValueError(
                f"the {split} split (dataset {split}_image_tensors, data/05_model_input/{split}_images.safetensors) "
                f"has {rows['images'].shape[0]} images; evaluate needs at least {MIN_ROWS} for its error bars: "
                f"add images to the data source or raise preprocess.test_fraction")
    coverage = {"reference": class_coverage(test["labels"]), "real_vs_real": class_coverage(train["labels"])}
    log.info("reference set: %d held-out images from %d classes; real-vs-real set: %d train images from %d classes",
             coverage["reference"]["n"], coverage["reference"]["n_classes"], coverage["real_vs_real"]["n"],
             coverage["real_vs_real"]["n_classes"])
    ref = embed(as_float(test["images"]))
    sigma = 10.0 if quality_embedder.kind == "clip" else median_heuristic_sigma(ref)
    return {"reference": ref, "train": embed(as_float(train["images"])), "sigma": sigma, "embedder": embed.name,
            "coverage": coverage}


def _samplers(ledi: TrainedModel, gaussian: TrainedModel, prior: TrainedModel, latent_flow: TrainedModel,
              autoencoder: TrainedModel, device: torch.device) -> dict[str, Any]:
    return {"ledi": make_sampler(ledi, prior, latent_flow, autoencoder, device, precision="bf16"),
            "gaussian": make_sampler(gaussian, None, None, autoencoder, device, precision="bf16")}


def _quality_spec(ev: EvaluateParams, reference_features: dict[str, Any]) -> QualitySpec:
    ref = reference_features["reference"]
    return QualitySpec(sigma=reference_features["sigma"], scale=1000.0,
                       kid_subset=min(1000, ev.n_samples, ref.shape[0]), kid_subsets=20)


def sweep_quality(ledi_model: TrainedModel, gaussian_model: TrainedModel, prior_model: TrainedModel,
                  latent_flow_model: TrainedModel, autoencoder_model: TrainedModel, quality_embedder: TrainedModel,
                  reference_features: dict[str, Any], evaluate: dict, run: dict) -> tuple[dict[str, Any], dict]:
    """Quality and wall-clock for both models x solvers x NFE (for each sampling seed), plus the
    sanity rows: real-vs-real (the floor), LeDiFlow's x0 alone, N(0, I). Keeps every point's
    embeddings for the error bars."""
    ev, run_p = _params(evaluate), parse("run", run)
    device = resolve_device(run_p.device)
    samplers = _samplers(ledi_model, gaussian_model, prior_model, latent_flow_model, autoencoder_model, device)
    embed = build_embedder(quality_embedder, device)
    ref = reference_features["reference"]
    spec = _quality_spec(ev, reference_features)
    rows, features, examples = [], [], {}
    for i in range(ev.sampling_seeds):
        cfg = SweepConfig(tuple(ev.nfe_grid), tuple(s for s in ev.solvers if s != "dopri5"),
                          tuple(ev.adaptive_rtols) if "dopri5" in ev.solvers else (),
                          ev.n_samples, ev.batch_size, ev.seed + 1000 * i)
        result = sweep(samplers, embed, ref, spec, cfg, progress=log.info)
        rows += result.rows
        features += result.features
        for key, value in result.examples.items():
            examples.setdefault(key, value)
    sanity = {
        FLOOR: reference_features["train"],
        PRIOR_ONLY: prior_only_features(samplers["ledi"], embed, ev.n_samples, ev.batch_size, ev.seed),
        NOISE: embed(_noise_images(samplers["gaussian"], ev.n_samples, ev.seed)),
    }
    for name, feats in sanity.items():
        row = {"model": name, "solver": "none", "nfe_requested": 0, "rtol": None, "nfe": 0.0, "latent_nfe": 0.0,
               "seed": ev.seed, "seconds_per_image": None, "x0_seconds_per_image": None}
        row.update(quality(feats, ref, spec))
        rows.append(row)
        features.append(feats)
        log.info("sanity %-15s FD %.3f  MMD %.3f", name, row["fd"], row["mmd"])
    return {"rows": rows, "features": features}, examples


def error_bars(sweep_points: dict[str, Any], reference_features: dict[str, Any], evaluate: dict) -> pl.DataFrame:
    """The sweep table with paired half-sample intervals on the primary metric (``<metric>_low``,
    ``<metric>_high``, ``<metric>_replicates``) for the first sampling seed's points, and the spread
    over sampling seeds (``<metric>_seed_std`` / ``_seed_min`` / ``_seed_max``) when there are several."""
    ev = _params(evaluate)
    metric = ev.primary_metric
    rows, feats = sweep_points["rows"], sweep_points["features"]
    primary = [i for i, r in enumerate(rows) if r["seed"] == ev.seed]
    boot = QualityBootstrap(metric, ev.bootstrap.resamples, ev.bootstrap.confidence, seed=ev.seed,
                            sigma=reference_features["sigma"])
    log.info("error bars: %d paired half-sample replicates of %s for %d points", ev.bootstrap.resamples, metric,
             len(primary))
    reps = boot.replicates(reference_features["reference"], [feats[i] for i in primary],
                           [rows[i][metric] for i in primary])
    key = ("model", "solver", "nfe_requested", "rtol")
    by_setting: dict[tuple, list[float]] = {}
    for r in rows:
        by_setting.setdefault(tuple(r[k] for k in key), []).append(r[metric])
    out = []
    for i, rep in zip(primary, reps):
        row = dict(rows[i])
        interval = boot.interval(rep)
        row[f"{metric}_low"], row[f"{metric}_high"] = interval.low, interval.high
        row[f"{metric}_replicates"] = rep.tolist()
        values = by_setting[tuple(row[k] for k in key)]
        row[f"{metric}_seeds"] = len(values)
        row[f"{metric}_seed_std"] = float(torch.tensor(values).std()) if len(values) > 1 else None
        row[f"{metric}_seed_min"], row[f"{metric}_seed_max"] = min(values), max(values)
        out.append(row)
    table = pl.DataFrame(out, schema_overrides={"nfe_requested": pl.Int64, "rtol": pl.Float64,
                                                "seconds_per_image": pl.Float64, "x0_seconds_per_image": pl.Float64,
                                                f"{metric}_seed_std": pl.Float64}, infer_schema_length=None)
    return table.with_columns(pl.lit(reference_features["embedder"]).alias("embedder"),
                              pl.lit(reference_features["sigma"]).alias("mmd_sigma"))


def sweep_latent_sampler(ledi_model: TrainedModel, prior_model: TrainedModel, latent_flow_model: TrainedModel,
                         autoencoder_model: TrainedModel, quality_embedder: TrainedModel,
                         reference_features: dict[str, Any], evaluate: dict, run: dict) -> pl.DataFrame:
    """LeDiFlow at a fixed image NFE with the latent sampler's steps and solver varied: quality (with
    paired intervals) against the cost of drawing x0, to choose ``latent_flow.sample_steps``/``sample_solver``.
    The row ``configured`` is the setting the trained latent sampler uses now."""
    ev, run_p = _params(evaluate), parse("run", run)
    ls = ev.latent_sweep
    schema = {"latent_solver": pl.String, "latent_steps": pl.Int64, "latent_nfe": pl.Float64, "configured": pl.Boolean,
              ev.primary_metric: pl.Float64, f"{ev.primary_metric}_low": pl.Float64,
              f"{ev.primary_metric}_high": pl.Float64, "ms_per_image": pl.Float64, "x0_ms_per_image": pl.Float64,
              "x0_fraction": pl.Float64, "image_nfe": pl.Int64}
    if not ls.steps or not ls.solvers:
        return pl.DataFrame(schema=schema)
    device = resolve_device(run_p.device)
    sampler = make_sampler(ledi_model, prior_model, latent_flow_model, autoencoder_model, device, precision="bf16")
    embed = build_embedder(quality_embedder, device)
    configured = (sampler.latent_solver, sampler.latent_steps)
    rows, feats = [], []
    for solver, steps in [(solver, steps) for solver in ls.solvers for steps in ls.steps]:
        sampler.latent_solver, sampler.latent_steps = solver, steps
        gen = generate_and_embed(sampler, embed, ev.n_samples, ev.batch_size, ls.image_solver, nfe=ls.image_nfe,
                                 seed=ev.seed)
        q = quality(gen.features, reference_features["reference"], _quality_spec(ev, reference_features))
        rows.append({"latent_solver": solver, "latent_steps": steps, "latent_nfe": gen.latent_nfe,
                     "configured": (solver, steps) == configured, ev.primary_metric: q[ev.primary_metric],
                     "ms_per_image": 1e3 * gen.seconds_per_image, "x0_ms_per_image": 1e3 * gen.x0_seconds_per_image,
                     "x0_fraction": gen.x0_seconds_per_image / gen.seconds_per_image, "image_nfe": ls.image_nfe})
        feats.append(gen.features)
        log.info("latent sampler %s x %d steps: %s %.4f, %.3f ms/image of which x0 %.3f ms (%.0f%%)", solver, steps,
                 ev.primary_metric, q[ev.primary_metric], rows[-1]["ms_per_image"], rows[-1]["x0_ms_per_image"],
                 100 * rows[-1]["x0_fraction"])
    sampler.latent_solver, sampler.latent_steps = configured
    boot = QualityBootstrap(ev.primary_metric, ev.bootstrap.resamples, ev.bootstrap.confidence, seed=ev.seed,
                            sigma=reference_features["sigma"])
    reps = boot.replicates(reference_features["reference"], feats, [r[ev.primary_metric] for r in rows])
    for row, rep in zip(rows, reps):
        iv = boot.interval(rep)
        row[f"{ev.primary_metric}_low"], row[f"{ev.primary_metric}_high"] = iv.low, iv.high
    return pl.DataFrame(rows, schema=schema)


def _noise_images(sampler, n: int, seed: int) -> torch.Tensor:
    """N(0, I) in the flow's space, decoded like a sample: the 'no model at all' sanity row."""
    g = torch.Generator(device=sampler.device).manual_seed(seed)
    noise = torch.randn((n, *sampler.shape), generator=g, device=sampler.device)
    return sampler._finish(noise).float().clamp(-1, 1)


def measure_straightness(ledi_model: TrainedModel, gaussian_model: TrainedModel, prior_model: TrainedModel,
                         latent_flow_model: TrainedModel, autoencoder_model: TrainedModel, evaluate: dict,
                         run: dict) -> dict[str, float]:
    """Mean ||v(x_t, t) - (x1 - x0)||^2 along each model's Euler trajectories (0 = straight)."""
    ev, run_p = _params(evaluate), parse("run", run)
    samplers = _samplers(ledi_model, gaussian_model, prior_model, latent_flow_model, autoencoder_model,
                         resolve_device(run_p.device))
    return {name: straightness(s, ev.straightness_samples, ev.straightness_steps, ev.seed)
            for name, s in samplers.items()}


def _curve(table: pl.DataFrame, model: str, solver: str, metric: str) -> Curve:
    c = table.filter((pl.col("model") == model) & (pl.col("solver") == solver)).sort("nfe")
    return Curve(c["nfe"].to_list(), c[metric].to_list(), c[f"{metric}_replicates"].to_list(),
                 c["seconds_per_image"].to_list(), c["x0_seconds_per_image"].to_list())


def _point(table: pl.DataFrame, metric: str, name: str) -> PointWithInterval | None:
    rows = table.filter(pl.col("model") == name)
    if rows.height == 0:
        return None
    r = rows.row(0, named=True)
    return PointWithInterval(name, r[metric], Interval(r[f"{metric}_low"], r[f"{metric}_high"]))


def _r(v: float | None, digits: int = 5) -> float | None:
    return None if v is None else round(float(v), digits)


def latent_sampler_choice(sweep: pl.DataFrame, metric: str) -> dict[str, Any]:
    """The configured latent sampler's cost, and the cheapest setting whose quality is within the
    error bars of the best one (the sweep's recommendation)."""
    if sweep.height == 0:
        return {}
    best = sweep.sort(metric).row(0, named=True)
    ok = sweep.filter(pl.col(metric) <= best[f"{metric}_high"]).sort("x0_ms_per_image")
    pick = ok.row(0, named=True)
    configured = sweep.filter(pl.col("configured"))
    out = {"recommended": f"{pick['latent_solver']} x {pick['latent_steps']}",
           "recommended_x0_fraction": _r(pick["x0_fraction"], 4), "recommended_quality": _r(pick[metric]),
           "best_quality": _r(best[metric]), "best_quality_high": _r(best[f"{metric}_high"]),
           "image_nfe": int(pick["image_nfe"])}
    if configured.height:
        c = configured.row(0, named=True)
        out |= {"configured": f"{c['latent_solver']} x {c['latent_steps']}", "configured_x0_fraction": _r(c["x0_fraction"], 4),
                "configured_quality": _r(c[metric])}
    return out


def _training_status(fm_metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("stop_reason", "steps", "step_cap", "best_quality", "final_quality", "evaluations", "monitor")
    return {k: fm_metrics[k] for k in keys if k in fm_metrics}


def summarize(sweep_results: pl.DataFrame, straightness_values: dict[str, float], embedder_metrics: dict[str, Any],
              reference_features: dict[str, Any], ledi_fm_metrics: dict[str, Any], gaussian_fm_metrics: dict[str, Any],
              latent_sampler_sweep: pl.DataFrame, evaluate: dict) -> tuple[dict[str, Any], pl.DataFrame]:
    """DVC metrics (metrics.json) and the per-solver speedup table: every quality point with its
    interval, matched-quality speedups in NFE and in seconds with intervals, which LeDiFlow-vs-baseline
    differences are beyond the noise, each model's plateau status, and whether the evaluation can be
    trusted at all. A speedup over a baseline that never reached its plateau is labelled as such."""
    ev = _params(evaluate)
    training = {"ledi": _training_status(ledi_fm_metrics), "gaussian": _training_status(gaussian_fm_metrics)}
    baseline_converged = training["gaussian"].get("stop_reason") == "plateau"
    caveat = "" if baseline_converged else " [baseline not converged: it hit its step cap before its quality plateau]"
    metric, conf = ev.primary_metric, ev.bootstrap.confidence
    fixed_solvers = [s for s in ev.solvers if s != "dopri5"]
    fixed = sweep_results.filter(pl.col("solver").is_in(fixed_solvers))
    points = [PointWithInterval(f"{r['model']} {r['solver']} NFE {r['nfe']:g}", r[metric],
                                Interval(r[f"{metric}_low"], r[f"{metric}_high"]))
              for r in sweep_results.filter(pl.col("model").is_in(MODELS)).iter_rows(named=True)]
    warnings = reliability_warnings(points, _point(sweep_results, metric, FLOOR), _point(sweep_results, metric, NOISE),
                                    embedder_metrics.get("test_accuracy"),
                                    min_noise_to_floor=ev.reliability.min_noise_to_floor,
                                    min_judge_accuracy=ev.reliability.min_judge_accuracy, n_samples=ev.n_samples)
    reliable = not warnings
    for w in warnings:
        log.warning("evaluation unreliable: %s", w)
    metrics: dict[str, Any] = {
        "primary_metric": metric, "evaluation_reliable": reliable, "evaluation_warnings": warnings,
        "embedder": {k: v for k, v in embedder_metrics.items() if k != "train_seconds"},
        "straightness": straightness_values,
        "confidence": conf, "interval_resamples": ev.bootstrap.resamples,
        "n_samples": ev.n_samples, "n_reference": int(reference_features["reference"].shape[0]),
        "sampling_seeds": ev.sampling_seeds, "subset_coverage": reference_features.get("coverage", {}),
        "training": training, "baseline_converged": baseline_converged,
        # Wall-clock figures differ from run to run: they live under "wallclock" only, so that the rest of
        # this file is identical when the same code, settings and data run again.
        "wallclock": {"latent_sampler": latent_sampler_choice(latent_sampler_sweep, metric),
                      "judge_train_seconds": embedder_metrics.get("train_seconds")},
    }
    wallclock = metrics["wallclock"]
    rows = []
    for solver in fixed["solver"].unique(maintain_order=True).to_list():
        ledi, base = _curve(fixed, "ledi", solver, metric), _curve(fixed, "gaussian", solver, metric)
        for label, ref_nfe in (("at_reference_nfe", ev.reference_nfe), ("vs_best_baseline", None)):
            if ref_nfe is not None and ref_nfe not in base.nfe:
                continue
            cmp = compare(ledi, base, ref_nfe, conf)
            sp, wall = cmp.nfe.point, cmp.wallclock
            text = (cmp.nfe.text() + caveat if reliable
                    else f"unreliable evaluation ({cmp.nfe.text()}): see evaluation_warnings")
            rows.append({"solver": solver, "reference": label, "reference_nfe": sp.reference_nfe,
                         "reference_quality": sp.reference_quality, "status": sp.status if reliable else "unreliable",
                         "matched_nfe": sp.matched_nfe, "speedup": sp.speedup, "speedup_text": text,
                         "wallclock_speedup": wall.speedup if wall else None,
                         "wallclock_text": wall.text() if wall else "not reached",
                         "ledi_ms_per_image": 1e3 * wall.ledi_seconds if wall else None,
                         "ledi_x0_ms_per_image": 1e3 * wall.ledi_x0_seconds if wall else None,
                         "baseline_ms_per_image": 1e3 * wall.baseline_seconds if wall else None})
            metrics[f"speedup_{solver}_{label}"] = text
            wallclock[f"speedup_{solver}_{label}"] = wall.text() if wall else "not reached"
            if reliable and sp.status == "reached":  # a lower bound (grid floor) is never reported as a number
                metrics[f"speedup_{solver}_{label}_value"] = round(sp.speedup, 4)
                wallclock[f"speedup_{solver}_{label}_value"] = round(wall.speedup, 4)
        better = {}
        for n, q, reps in zip(ledi.nfe, ledi.quality, ledi.replicates):
            if n in base.nfe:
                j = base.nfe.index(n)
                diff = paired_difference(reps, base.replicates[j], base.quality[j] - q, conf)
                better[str(int(n))] = ("ledi" if diff.low > 0 else "gaussian" if diff.high < 0 else "noise")
        metrics[f"better_{solver}"] = better  # which model is better at each NFE, beyond the noise
        for model, c in (("ledi", ledi), ("gaussian", base)):
            metrics[f"{metric}_{model}_{solver}"] = {str(int(n)): _r(q) for n, q in zip(c.nfe, c.quality)}
            sub = fixed.filter((pl.col("model") == model) & (pl.col("solver") == solver)).sort("nfe")
            metrics[f"{metric}_{model}_{solver}_low"] = dict(zip(map(str, map(int, sub["nfe"])), map(_r, sub[f"{metric}_low"])))
            metrics[f"{metric}_{model}_{solver}_high"] = dict(zip(map(str, map(int, sub["nfe"])), map(_r, sub[f"{metric}_high"])))
            wallclock[f"ms_per_image_{model}_{solver}"] = {str(int(n)): _r(1e3 * t, 4) for n, t in zip(c.nfe, c.seconds)}
        wallclock[f"ledi_x0_overhead_ms_per_image_{solver}"] = _r(1e3 * sum(ledi.x0_seconds) / len(ledi.x0_seconds), 4)
        if 4 in ledi.nfe:
            i = ledi.nfe.index(4)
            wallclock[f"ledi_x0_overhead_fraction_at_nfe4_{solver}"] = _r(ledi.x0_seconds[i] / ledi.seconds[i], 4)
    for r in sweep_results.filter(pl.col("solver") == "none").iter_rows(named=True):
        metrics[f"sanity_{r['model']}_{metric}"] = _r(r[metric])
        metrics[f"sanity_{r['model']}_{metric}_interval"] = [_r(r[f"{metric}_low"]), _r(r[f"{metric}_high"])]
    if ev.sampling_seeds > 1:
        metrics[f"{metric}_max_seed_std"] = _r(fixed[f"{metric}_seed_std"].max())
    schema = {"solver": pl.String, "reference": pl.String, "reference_nfe": pl.Float64, "reference_quality": pl.Float64,
              "status": pl.String, "matched_nfe": pl.Float64, "speedup": pl.Float64, "speedup_text": pl.String,
              "wallclock_speedup": pl.Float64, "wallclock_text": pl.String, "ledi_ms_per_image": pl.Float64,
              "ledi_x0_ms_per_image": pl.Float64, "baseline_ms_per_image": pl.Float64}
    return metrics, pl.DataFrame(rows, schema=schema)


def plot_quality_vs_nfe(sweep_results: pl.DataFrame, evaluate: dict) -> Figure:
    """Quality against NFE per solver, with each point's interval, and the sanity rows as lines."""
    ev = _params(evaluate)
    metric = ev.primary_metric
    solvers = [s for s in sweep_results["solver"].unique(maintain_order=True).to_list() if s != "none"]
    fig, axes = plt.subplots(1, len(solvers), figsize=(4.5 * len(solvers), 3.6), dpi=100, squeeze=False)
    sanity = sweep_results.filter(pl.col("solver") == "none")
    for ax, solver in zip(axes[0], solvers):
        for model, style in (("ledi", "o-"), ("gaussian", "s--")):
            c = sweep_results.filter((pl.col("model") == model) & (pl.col("solver") == solver)).sort("nfe")
            q = c[metric].to_numpy()
            err = [q - c[f"{metric}_low"].to_numpy(), c[f"{metric}_high"].to_numpy() - q]
            ax.errorbar(c["nfe"].to_list(), q, yerr=err, fmt=style, capsize=3, ms=4,
                        label="LeDiFlow" if model == "ledi" else "Gaussian")
        for r in sanity.iter_rows(named=True):
            if r["model"] == FLOOR:
                ax.axhline(r[metric], color="grey", lw=0.8, ls=":", label="real vs real (floor)")
                ax.axhspan(r[f"{metric}_low"], r[f"{metric}_high"], color="grey", alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", nonpositive="clip")
        ax.set_xlabel("NFE (image flow)")
        ax.set_ylabel(f"{metric} ({sweep_results['embedder'][0]}), {round(100 * ev.bootstrap.confidence)}% intervals")
        ax.set_title(solver)
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
    """One row per model and NFE (grid solver), ``grid_images`` samples each."""
    ev = _params(evaluate)
    keys = sorted(k for k in sweep_examples if k[1] == ev.grid_solver)
    fig, axes = plt.subplots(len(keys), 1, figsize=(ev.grid_images * 0.8 + 1, 0.95 * len(keys) + 0.5), dpi=100,
                             squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        model, solver, nfe = key
        _grid(ax, sweep_examples[key][: ev.grid_images], f"{model} {solver} NFE {nfe:g}")
    fig.tight_layout()
    return fig


def plot_applications(ledi_model: TrainedModel, gaussian_model: TrainedModel, prior_model: TrainedModel,
                      latent_flow_model: TrainedModel, autoencoder_model: TrainedModel,
                      test_model_input: dict[str, Any], evaluate: dict, run: dict) -> tuple[Figure, Figure, Figure]:
    """Prior samples (mean and x0), an interpolation strip and inpainting examples."""
    ev, run_p = _params(evaluate), parse("run", run)
    device = resolve_device(run_p.device)
    s = _samplers(ledi_model, gaussian_model, prior_model, latent_flow_model, autoencoder_model, device)
    ledi, gauss = s["ledi"], s["gaussian"]
    n, steps = ev.grid_images, max(4, ev.reference_nfe // 8)
    finish = ledi._finish
    fig_p, ax = plt.subplots(3, 1, figsize=(n * 0.8 + 1, 3.2), dpi=100)
    _grid(ax[0], finish(ledi.prior_mean(n, ev.seed)), "prior mean mu(z)")
    x0, _, _ = ledi.draw_x0(n, torch.Generator(device=device).manual_seed(ev.seed))
    _grid(ax[1], finish(x0), "prior sample x0 = mu + s sigma eps")
    _grid(ax[2], ledi.sample(n, nfe=steps * 2, solver="midpoint", seed=ev.seed).images, f"LeDiFlow, NFE {steps * 2}")
    fig_p.tight_layout()
    fig_i, ax = plt.subplots(3, 1, figsize=(ev.interpolation_points * 0.8 + 1, 3.2), dpi=100)
    k = ev.interpolation_points
    _grid(ax[0], ledi.interpolate(ev.seed, ev.seed + 1, k, space="w", nfe=steps * 2, solver="midpoint").images,
          "LeDiFlow: slerp in w (shared eps)")
    _grid(ax[1], ledi.interpolate(ev.seed, ev.seed + 1, k, space="z", nfe=steps * 2, solver="midpoint").images,
          "LeDiFlow: lerp in z (shared eps)")
    _grid(ax[2], gauss.interpolate(ev.seed, ev.seed + 1, k, nfe=steps * 2, solver="midpoint").images,
          "Gaussian baseline: slerp of the noise")
    fig_i.tight_layout()
    m = ev.inpaint_examples
    known = as_float(seeded_rows(test_model_input, m, ev.seed)["images"]).to(device)
    mask = torch.zeros_like(known[:1])
    mask[..., : known.shape[-1] // 2] = 1  # left half known
    fig_n, ax = plt.subplots(4, 1, figsize=(m * 0.8 + 1, 4.2), dpi=100)
    _grid(ax[0], finish(known), "original")
    _grid(ax[1], finish(known * mask), "known (left half)")
    _grid(ax[2], ledi.inpaint(known, mask, nfe=steps * 2, solver="midpoint", seed=ev.seed).images, "LeDiFlow inpainting")
    _grid(ax[3], gauss.inpaint(known, mask, nfe=steps * 2, solver="midpoint", seed=ev.seed).images, "Gaussian inpainting")
    fig_n.tight_layout()
    return fig_p, fig_i, fig_n

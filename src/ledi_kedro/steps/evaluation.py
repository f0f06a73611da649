"""The evaluation of a trained chain (docs/design.md §3), as plain functions over typed parameters.

1. :func:`reference_set`: the judge's features of the held-out reference set, of the real-vs-real set,
   of held-out images outside the reference (the memorisation yardstick; in latent space also as the
   autoencoder reconstructs them) and of every training image.
2. :func:`sweep_points`: both models x solvers x NFE (the baseline's grid extended once when its best point
   sits at the grid's edge), the sanity rows (the real-vs-real floor, the prior's draws alone, N(0, I), and in
   latent space the autoencoder's reconstructions) and each point's nearest-training-image distances.
3. :func:`with_intervals`: paired half-sample error bars on every point.
4. :func:`latent_sampler_points`: LeDiFlow against the image NFE with the latent sampler's solver and steps
   varied, and started from encoder codes of training and of held-out images (what a perfect latent sampler
   would give), each with its interval.
5. :func:`summarize`: the comparison (speedups in NFE and seconds, which differences are noise, whether
   LeDiFlow's cheapest point already beats the baseline's best), the memorisation check, the latent
   sampler's frontier, each model's plateau status and whether the evaluation can be trusted.

Rows are plain dicts (the ``evaluate`` pipeline stores them as tables); everything else is tensors and
dataclasses, so the GPU check runs the same code without Kedro or polars.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ledi_kedro.core.artifacts import GeneratorArtifact, TrainedModel, load_autoencoder
from ledi_kedro.core.data.tensors import as_float
from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.embedders import build_embedder
from ledi_kedro.core.sweeps import QualitySpec, SweepConfig, generate_and_embed, prior_only_features, quality, sweep
from ledi_kedro.core.metrics import median_heuristic_sigma
from ledi_kedro.core.metrics.comparison import (
    Curve, PointWithInterval, better_per_nfe, cheapest_beats_best, compare, matched_quality, paired_difference,
    reliability_warnings,
)

from ledi_kedro.core.metrics.intervals import MIN_ROWS, Interval, QualityBootstrap
from ledi_kedro.core.metrics.memorisation import (
    close_fraction_limit, close_fraction_p_value, memorisation, nearest_distances,
)

from ledi_kedro.core.metrics.model_quality import straightness
from ledi_kedro.core.encoding import encode_moments
from ledi_kedro.core.generation import Generator
from ledi_kedro.core.solvers import FIXED_SOLVERS, stages
from ledi_kedro.core.subsets import class_coverage, derive_seed, rows_outside, seeded_indices, seeded_rows
from ledi_kedro.params import EvaluateParams, RunParams, resolve_evaluate
from ledi_kedro.steps.training import training_subset

log = logging.getLogger(__name__)

MODELS = ("ledi", "gaussian")
FLOOR, PRIOR_ONLY, NOISE = "real_train", "prior_x0", "gaussian_noise"
RECONSTRUCTED = "reconstructed"  # latent space only: held-out images through the autoencoder
SANITY = (FLOOR, PRIOR_ONLY, NOISE, RECONSTRUCTED)
# The latent-sampler sweep's rows that start from encoder codes instead of the latent sampler.
CODES_TRAIN, CODES_HELD_OUT = "codes:train", "codes:held_out"
# MMD bandwidth on CLIP features as CMMD defines it (Jayasumana et al., 2024); other judges use the median
# heuristic fixed once on the reference.
CMMD_SIGMA = 10.0
MMD_SCALE = 1000.0  # CMMD's x1000, kept for every judge so that the figures read alike
KID_SUBSET, KID_SUBSETS = 1000, 20  # KID's usual subset size; subsets averaged
# The memorisation check counts samples nearer to a training image than this quantile of the held-out images'
# distances: about this share for a model that does not copy, near 1 for one that does.
HELD_OUT_QUANTILE = 0.05
PIXEL_SIDE = 16  # its second feature space: pixels, area-averaged to at most this size
# The feature spaces of the memorisation check: the judge's, and pixels (row keys nn_*, nn_pixels_*).
MEMORISATION_SPACES = {"judge": "nn", "pixels": "nn_pixels"}


@dataclass
class ReferenceSet:
    """The judge's features of the real images the evaluation compares against."""

    reference: torch.Tensor  # n_reference held-out images (a seeded sample): every point is scored against it
    real_vs_real: torch.Tensor  # n_samples training images: the floor row, at the size of a generated point
    held_out: torch.Tensor | None  # up to n_samples held-out images outside the reference (None: too few)
    held_out_rows: torch.Tensor | None  # their rows in the test split (for their encoder codes)
    training: torch.Tensor  # every image the models trained on (the memorisation check's bank)
    sigma: float  # the MMD bandwidth
    embedder: str
    coverage: dict[str, Any] = field(default_factory=dict)  # rows and classes of each subset
    # The held-out images encoded and decoded by the autoencoder (latent space; else None): a latent model
    # cannot score better than its autoencoder's reconstructions.
    reconstructed: torch.Tensor | None = None
    # The memorisation check's second feature space (pixel_probe): the training images and the held-out ones.
    training_pixels: torch.Tensor | None = None
    held_out_pixels: torch.Tensor | None = None


def quality_spec(ev: EvaluateParams, ref: ReferenceSet) -> QualitySpec:
    return QualitySpec(sigma=ref.sigma, scale=MMD_SCALE, kid_subset=min(KID_SUBSET, ev.n_samples,
                                                                          ref.reference.shape[0]),
                       kid_subsets=KID_SUBSETS)


def evaluation_rows(n_test: int, ev: EvaluateParams) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The test split's rows the evaluation reads (``ev`` resolved): the reference (``n_reference``, a seeded
    sample) and up to ``n_samples`` held-out rows outside it (None when fewer than ``MIN_ROWS`` are left), disjoint
    by construction."""
    ref_rows = seeded_indices(n_test, ev.n_reference, derive_seed(ev.seed, "reference"))
    rest = rows_outside(n_test, ref_rows)
    held_out = (rest[seeded_indices(len(rest), ev.n_samples, derive_seed(ev.seed, "held_out"))]
                if len(rest) >= MIN_ROWS else None)
    return ref_rows, held_out


def reference_set(
quality_embedder: TrainedModel, train_images: dict[str, Any], test_images: dict[str, Any],
                  ev: EvaluateParams, run: RunParams, autoencoder: TrainedModel | None = None,
                  test_input: dict[str, Any] | None = None) -> ReferenceSet:
    """Every real set the evaluation uses, each a seeded sample: ``n_reference`` held-out images (the
    reference), ``n_samples`` training images (the real-vs-real floor), up to ``n_samples`` held-out images
    outside the reference, and every training image the models saw (``run.max_train_images``' subset). In latent
    space (``autoencoder`` is one, ``test_input`` the test split's cached latents), the held-out images outside
    the reference also as the autoencoder reconstructs them (decoded from their cached latents)."""
    ev = resolve_evaluate(ev, run)
    device = resolve_device(run.device)
    embed = build_embedder(quality_embedder, device)
    n_test = int(test_images["images"].shape[0])
    ref_rows, held_out_rows = evaluation_rows(n_test, ev)
    test = {k: v[ref_rows] for k, v in test_images.items() if k != "__metadata__"}
    train = seeded_rows(train_images, ev.n_samples, derive_seed(ev.seed, "real_vs_real"))
    for split, rows in (("test", test), ("train", train)):
        if rows["images"].shape[0] < MIN_ROWS:
            raise ValueError(
                f"the {split} split (dataset {split}_image_tensors, data/05_model_input/{split}_images.safetensors) "
                f"has {rows['images'].shape[0]} images; evaluate needs at least {MIN_ROWS} for its error bars: "
                f"add images to the data source or raise preprocess.test_fraction")
    if held_out_rows is None:
        log.warning("only %d held-out images outside the %d of the reference set: no held-out memorisation "
                    "yardstick and no held-out encoder-code row (lower evaluate.n_reference to get them)",
                    n_test - len(ref_rows), len(ref_rows))
    coverage = {"reference": class_coverage(test["labels"]), "real_vs_real": class_coverage(train["labels"])}
    log.info("reference set: %d held-out images from %d classes; real-vs-real set: %d train images from %d classes",
             coverage["reference"]["n"], coverage["reference"]["n_classes"], coverage["real_vs_real"]["n"],
             coverage["real_vs_real"]["n_classes"])
    ref = embed(as_float(test["images"]))
    seen = training_subset(train_images, run.max_train_images, run.seed)["images"]
    training = torch.cat([embed(as_float(chunk)) for chunk in torch.as_tensor(seen).split(4096)])
    training_pixels = torch.cat([pixel_probe(as_float(chunk)) for chunk in torch.as_tensor(seen).split(4096)])
    held_out = embed(as_float(test_images["images"][held_out_rows])) if held_out_rows is not None else None
    held_out_pixels = pixel_probe(as_float(test_images["images"][held_out_rows])) if held_out_rows is not None else None
    sigma = CMMD_SIGMA if quality_embedder.kind == "clip" else median_heuristic_sigma(ref)
    ae = load_autoencoder(autoencoder, device) if autoencoder is not None else None
    reconstructed = None
    if ae is not None and held_out_rows is not None:
        if test_input is None:
            raise ValueError("reference_set: the test split's latents (test_model_input) are needed in latent space")
        with torch.no_grad():
            latents = as_float(test_input["images"][held_out_rows])
            images = torch.cat([ae.decode_scaled(chunk.to(device)).float().clamp(-1, 1)
                                for chunk in latents.split(ev.batch_size)])
        reconstructed = embed(images)
    return ReferenceSet(ref, embed(as_float(train["images"])), held_out, held_out_rows, training, sigma, embed.name,
                        coverage, reconstructed, training_pixels, held_out_pixels)


def generators(ledi: GeneratorArtifact, gaussian: GeneratorArtifact, device: torch.device) -> dict[str, Generator]:
    """Both models' generators as users get them (EMA weights, the shipped latent sampler, bf16 on CUDA)."""
    return {"ledi": ledi.build(device, precision="bf16"), "gaussian": gaussian.build(device, precision="bf16")}


def pixel_probe(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as flat pixel vectors (area-averaged to at most ``PIXEL_SIDE`` px, float32, CPU): the
    memorisation check's second feature space, which no model of the project shaped."""
    x = images.float()
    if x.shape[-1] > PIXEL_SIDE:
        x = torch.nn.functional.adaptive_avg_pool2d(x, PIXEL_SIDE)
    return x.flatten(1).cpu()


def _memorisation_fields(features: torch.Tensor, bank: torch.Tensor, held_out_nn: torch.Tensor | None,
                         prefix: str = "nn") -> dict[str, float | None]:
    """A set's median distance to its nearest training image (in ``bank``'s feature space), and the share of it
    nearer than the held-out images' ``HELD_OUT_QUANTILE``-quantile (None without held-out images)."""
    nn = nearest_distances(features, bank)
    if held_out_nn is None:
        return {f"{prefix}_train_median": float(nn.median()), f"{prefix}_close_fraction": None}
    m = memorisation(nn, held_out_nn, bank.shape[0], HELD_OUT_QUANTILE)
    return {f"{prefix}_train_median": m.generated_median, f"{prefix}_close_fraction": m.close_fraction}


def sweep_points(ledi: GeneratorArtifact, gaussian: GeneratorArtifact, quality_embedder: TrainedModel,
                 ref: ReferenceSet, ev: EvaluateParams, run: RunParams,
                 progress: Callable[[str], None] | None = None) -> tuple[dict[str, list], dict]:
    """Quality and wall-clock for both models x solvers x NFE (for each sampling seed), the sanity rows
    (real-vs-real, LeDiFlow's x0 alone, N(0, I), the autoencoder's reconstructions in latent space), and every
    point's memorisation fields. With
    ``extend_baseline_grid``, a solver whose baseline is best at the grid's largest NFE gets one more
    baseline point at twice that NFE (the baseline's best must not be an artefact of the grid). Returns
    ``{"rows": [...], "features": [...]}`` (each row's embeddings, for the error bars) and example images."""
    ev = resolve_evaluate(ev, run)
    device = resolve_device(run.device)
    models = generators(ledi, gaussian, device)
    embed = build_embedder(quality_embedder, device)
    spec = quality_spec(ev, ref)
    fixed = tuple(s for s in ev.solvers if s != "dopri5")
    rows, features, pixels, examples = [], [], [], {}
    for i in range(ev.sampling_seeds):
        seed = ev.seed + 1000 * i
        cfg = SweepConfig(tuple(ev.nfe_grid), fixed, tuple(ev.adaptive_rtols) if "dopri5" in ev.solvers else (),
                          ev.n_samples, ev.batch_size, seed)
        result = sweep(models, embed, ref.reference, spec, cfg, progress=progress, probe=pixel_probe)
        if ev.extend_baseline_grid:
            for solver in fixed:
                base = [(r["fd"], r["nfe_requested"]) for r in result.rows
                        if r["model"] == "gaussian" and r["solver"] == solver]
                edge = max(n for n in ev.nfe_grid if n % stages(solver) == 0)
                if base and min(base)[1] == edge:
                    log.info("the baseline's best %s point sits at the grid's edge (NFE %d): adding NFE %d",
                             solver, edge, 2 * edge)
                    more = sweep({"gaussian": models["gaussian"]}, embed, ref.reference, spec,
                                 SweepConfig((2 * edge,), (solver,), (), ev.n_samples, ev.batch_size, seed), progress,
                                 probe=pixel_probe)
                    result.rows += more.rows
                    result.features += more.features
                    result.probe_features += more.probe_features
        rows += result.rows
        features += result.features
        pixels += result.probe_features
        for key, value in result.examples.items():
            examples.setdefault(key, value)
    sanity = {
        FLOOR: ref.real_vs_real,
        PRIOR_ONLY: prior_only_features(models["ledi"], embed, ev.n_samples, ev.batch_size, ev.seed),
        NOISE: embed(_noise_images(models["gaussian"], ev.n_samples, ev.seed)),
    }
    if ref.reconstructed is not None:
        sanity[RECONSTRUCTED] = ref.reconstructed
    pixels += [None] * len(sanity)  # the sanity rows are not generated by a trained flow: no pixel check
    for name, feats in sanity.items():
        row = {"model": name, "solver": "none", "nfe_requested": 0, "rtol": None, "nfe": 0.0, "latent_nfe": 0.0,
               "seed": ev.seed, "seconds_per_image": None, "x0_seconds_per_image": None}
        row.update(quality(feats, ref.reference, spec))
        rows.append(row)
        features.append(feats)
        log.info("sanity %-15s FD %.3f  MMD %.3f", name, row["fd"], row["mmd"])
    held_out_nn = nearest_distances(ref.held_out, ref.training) if ref.held_out is not None else None
    held_out_px = (nearest_distances(ref.held_out_pixels, ref.training_pixels)
                   if ref.held_out_pixels is not None and ref.training_pixels is not None else None)
    for row, feats, px in zip(rows, features, pixels):
        row.update(_memorisation_fields(feats, ref.training, held_out_nn))
        row["nn_n_held_out"] = None if held_out_nn is None else int(held_out_nn.numel())
        if px is not None and ref.training_pixels is not None:
            row.update(_memorisation_fields(px, ref.training_pixels, held_out_px, MEMORISATION_SPACES["pixels"]))
        else:
            row.update({"nn_pixels_train_median": None, "nn_pixels_close_fraction": None})
    return {"rows": rows, "features": features}, examples


def _noise_images(sampler: Generator, n: int, seed: int) -> torch.Tensor:
    """N(0, I) in the flow's space, decoded like a sample: the 'no model at all' sanity row."""
    g = torch.Generator(device=sampler.device).manual_seed(seed)
    noise = torch.randn((n, *sampler.shape), generator=g, device=sampler.device)
    return sampler.to_images(noise).float().clamp(-1, 1)


def _bootstrap(ev: EvaluateParams, ref: ReferenceSet) -> QualityBootstrap:
    # One seed for every set scored against the reference: the replicates of all points (the sweep's and the
    # latent sweep's) share the reference halves, so differences between any two points are paired.
    if ev.seed is None:
        raise ValueError("evaluate.seed is unresolved: pass the parameters through params.resolve_evaluate")
    return QualityBootstrap(ev.primary_metric, ev.bootstrap.resamples, ev.bootstrap.confidence,
                            seed=derive_seed(ev.seed, "bootstrap"), sigma=ref.sigma, scale=MMD_SCALE)


def with_intervals(points: dict[str, list], ref: ReferenceSet, ev: EvaluateParams) -> list[dict[str, Any]]:
    """The sweep's rows of the first sampling seed with paired half-sample intervals on the primary metric
    (``<metric>_low``, ``<metric>_high``, ``<metric>_replicates``) and the spread over sampling seeds
    (``<metric>_seeds``, ``_seed_std``, ``_seed_min``, ``_seed_max``)."""
    metric = ev.primary_metric
    rows, feats = points["rows"], points["features"]
    boot = _bootstrap(ev, ref)
    primary = [i for i, r in enumerate(rows) if r["seed"] == ev.seed]
    log.info("error bars: %d paired half-sample replicates of %s for %d points", ev.bootstrap.resamples, metric,
             len(primary))
    reps = boot.replicates(ref.reference, [feats[i] for i in primary], [rows[i][metric] for i in primary])
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
        row["embedder"], row["mmd_sigma"] = ref.embedder, ref.sigma
        out.append(row)
    return out


def latent_sampler_points(ledi: GeneratorArtifact, quality_embedder: TrainedModel,
                          train_input: dict[str, Any], test_input: dict[str, Any], ref: ReferenceSet,
                          ev: EvaluateParams, run: RunParams) -> list[dict[str, Any]]:
    """LeDiFlow at each of ``latent_sweep.image_points`` with the latent sampler's solver and steps varied, and
    started from encoder codes of (a seeded sample of) training images and of held-out images outside the
    reference set (``sample_solver`` ``codes:train`` / ``codes:held_out``): quality with paired intervals,
    cost per image and of drawing x0. ``configured`` marks the shipped latent sampler."""
    ls, metric = ev.latent_sweep, ev.primary_metric
    if not ls.image_points:
        return []
    ev = resolve_evaluate(ev, run)
    device = resolve_device(run.device)
    sampler = ledi.build(device, precision="bf16")
    embed = build_embedder(quality_embedder, device)
    spec = quality_spec(ev, ref)
    configured = (sampler.source.sample_solver, sampler.source.sample_steps)
    prior = sampler.source.prior
    codes = {CODES_TRAIN: encode_moments(prior, seeded_rows(train_input, ev.n_samples,
                                                            derive_seed(ev.seed, "codes"))["images"], device)}
    if ref.held_out_rows is not None:
        codes[CODES_HELD_OUT] = encode_moments(prior, test_input["images"][ref.held_out_rows], device)
    settings = [(solver, steps) for solver in ls.solvers for steps in ls.steps] + [(name, 0) for name in codes]
    rows, feats = [], []
    for point in ls.image_points:
        image_nfe = point.nfe
        for solver, steps in settings:
            if solver in codes:
                mu, logvar = codes[solver]
                gen = generate_and_embed(sampler, embed, int(mu.shape[0]), ev.batch_size, point.solver,
                                         nfe=image_nfe, seed=ev.seed, codes={"mu_z": mu, "logvar_z": logvar})
            else:
                varied = sampler.with_source(sampler.source.with_latent_sampler(solver, steps))
                gen = generate_and_embed(varied, embed, ev.n_samples, ev.batch_size, point.solver, nfe=image_nfe,
                                         seed=ev.seed)
            q = quality(gen.features, ref.reference, spec)
            rows.append({"sample_solver": solver, "sample_steps": steps, "latent_nfe": gen.latent_nfe,
                         "configured": (solver, steps) == configured, "image_nfe": image_nfe,
                         "image_solver": point.solver, metric: q[metric], "n_samples": q["n_samples"],
                         "ms_per_image": 1e3 * gen.seconds_per_image, "x0_ms_per_image": 1e3 * gen.x0_seconds_per_image,
                         "x0_fraction": gen.x0_seconds_per_image / gen.seconds_per_image})
            feats.append(gen.features)
            log.info("LeDiFlow from %s x %d at image NFE %d: %s %.4f, %.3f ms/image of which x0 %.3f ms", solver, steps,
                     image_nfe, metric, q[metric], rows[-1]["ms_per_image"], rows[-1]["x0_ms_per_image"])
    boot = _bootstrap(ev, ref)
    for row, rep in zip(rows, boot.replicates(ref.reference, feats, [r[metric] for r in rows])):
        iv = boot.interval(rep)
        row[f"{metric}_low"], row[f"{metric}_high"] = iv.low, iv.high
        row[f"{metric}_replicates"] = rep.tolist()  # paired with every other row's: differences are sharp
    return rows


def flow_straightness(ledi: GeneratorArtifact, gaussian: GeneratorArtifact, ev: EvaluateParams,
                      run: RunParams) -> dict[str, float]:
    """Mean ||v(x_t, t) - (x1 - x0)||^2 along each model's Euler trajectories (0 = straight)."""
    ev = resolve_evaluate(ev, run)
    models = generators(ledi, gaussian, resolve_device(run.device))
    return {name: straightness(s, ev.straightness_samples, ev.straightness_steps, ev.seed)
            for name, s in models.items()}


# ---------------------------------------------------------------- the comparison
def _r(v: float | None, digits: int = 5) -> float | None:
    return None if v is None else round(float(v), digits)


def _curve(rows: list[dict[str, Any]], model: str, solver: str, metric: str) -> Curve:
    c = sorted((r for r in rows if r["model"] == model and r["solver"] == solver), key=lambda r: r["nfe"])
    return Curve([r["nfe"] for r in c], [r[metric] for r in c], [r[f"{metric}_replicates"] for r in c],
                 [r["seconds_per_image"] for r in c], [r["x0_seconds_per_image"] for r in c])


def _point(rows: list[dict[str, Any]], metric: str, name: str) -> PointWithInterval | None:
    found = [r for r in rows if r["model"] == name]
    if not found:
        return None
    r = found[0]
    return PointWithInterval(name, r[metric], Interval(r[f"{metric}_low"], r[f"{metric}_high"]))


def latent_sampler_choice(rows: list[dict[str, Any]], metric: str, image_nfe: int,
                          confidence: float) -> dict[str, Any]:
    """At ``image_nfe``: the best latent-sampler setting, the cheapest setting whose difference from the best is
    within the noise (the paired interval of the difference holds 0: the frontier's recommendation), the
    shipped one and the encoder-code rows. Cost is the time of drawing x0."""
    sweep = [r for r in rows if r["image_nfe"] == image_nfe and not str(r["sample_solver"]).startswith("codes:")]
    if not sweep:
        return {}
    best = min(sweep, key=lambda r: r[metric])

    def gap(r: dict[str, Any]) -> Interval:  # r minus the best, paired
        return paired_difference(best[f"{metric}_replicates"], r[f"{metric}_replicates"], r[metric] - best[metric],
                                 confidence)

    pick = min((r for r in sweep if gap(r).low <= 0), key=lambda r: r["x0_ms_per_image"])
    out: dict[str, Any] = {"image_nfe": image_nfe, "best": f"{best['sample_solver']} x {best['sample_steps']}",
                           "best_quality": _r(best[metric]), "recommended": f"{pick['sample_solver']} x "
                                                                               f"{pick['sample_steps']}",
                           "recommended_quality": _r(pick[metric])}
    for r in sweep:
        if r["configured"]:
            g = gap(r)
            out |= {"configured": f"{r['sample_solver']} x {r['sample_steps']}", "configured_quality": _r(r[metric]),
                    "configured_minus_best": [_r(g.low), _r(g.high)], "configured_within_noise_of_best": g.low <= 0}
    for r in rows:
        if r["image_nfe"] == image_nfe and str(r["sample_solver"]).startswith("codes:"):
            which = r["sample_solver"].removeprefix("codes:")
            out[f"{which}_codes_quality"] = _r(r[metric])
            out[f"{which}_codes_interval"] = [_r(r[f"{metric}_low"]), _r(r[f"{metric}_high"])]
    return out


def _memorisation_summary(rows: list[dict[str, Any]], ev: EvaluateParams) -> tuple[dict[str, Any], list[str]]:
    """Per model and feature space (the judge's, pixels): the point with the largest share of near-copies, the
    calibrated limit for that model's number of points (:func:`close_fraction_limit`, family-wise rate
    ``memorisation.alpha``) and the worst point's Bonferroni-adjusted p-value; a warning for every model above it."""
    out: dict[str, Any] = {}
    warnings = []
    for model in MODELS:
        for space, prefix in MEMORISATION_SPACES.items():
            points = [r for r in rows if r["model"] == model and r.get(f"{prefix}_close_fraction") is not None]
            if not points:
                continue
            worst = max(points, key=lambda r: r[f"{prefix}_close_fraction"])
            n_s, n_h = int(worst["n_samples"]), int(worst["nn_n_held_out"])
            limit = close_fraction_limit(n_s, n_h, HELD_OUT_QUANTILE, ev.memorisation.alpha, len(points))
            p = min(1.0, len(points) * close_fraction_p_value(worst[f"{prefix}_close_fraction"], n_s, n_h,
                                                              HELD_OUT_QUANTILE))
            entry = {"worst_point": f"{worst['solver']} NFE {worst['nfe']:g}",
                     "close_fraction": _r(worst[f"{prefix}_close_fraction"], 4), "limit": _r(limit, 4),
                     "points": len(points), "p_value_adjusted": _r(p, 4), "copies": worst[f"{prefix}_close_fraction"] > limit,
                     "nn_train_median": _r(worst[f"{prefix}_train_median"], 4)}
            out.setdefault(model, {})[space] = entry
            if entry["copies"]:
                warnings.append(f"{model} copies training images ({space}): at {entry['worst_point']}, "
                                f"{100 * entry['close_fraction']:.1f}% of its samples are nearer to a training image "
                                f"than 95% of held-out images are, above the {100 * limit:.1f}% that a model copying "
                                f"nothing exceeds with probability {ev.memorisation.alpha:g} over its {len(points)} "
                                f"points (adjusted p = {p:.2g}); its quality figures are not a win")
    held = [r for r in rows if r["model"] == FLOOR]
    if held:
        out["real_vs_real_nn_train_median"] = _r(held[0]["nn_train_median"], 4)
    return out, warnings


TRAINING_STATUS_KEYS = ("stop_reason", "steps", "step_cap", "best_quality", "final_quality", "evaluations", "monitor",
                        "last_quarter", "warmth_by_solver", "warmth_fd")


@dataclass
class Summary:
    """``metrics``: the DVC metrics (metrics.json; everything outside ``wallclock`` repeats exactly for the
    same code, settings and data); ``speedups``: one row per solver and reference (NFE 64, the best)."""

    metrics: dict[str, Any]
    speedups: list[dict[str, Any]]


def summarize(rows: list[dict[str, Any]], latent_rows: list[dict[str, Any]], straightness_values: dict[str, float],
              judge_metrics: dict[str, Any], ref: ReferenceSet, ledi_status: dict[str, Any],
              gaussian_status: dict[str, Any], ev: EvaluateParams) -> Summary:
    """Every quality point with its interval, matched-quality speedups in NFE and in seconds with intervals,
    which LeDiFlow-vs-baseline differences are beyond the noise, whether LeDiFlow's cheapest point already
    beats the baseline's best, the encoder-code rows and the latent sampler's frontier, the memorisation
    check, each model's plateau status and whether the evaluation can be trusted at all. A speedup over a
    baseline that never reached its plateau is labelled as such."""
    training = {name: {k: s[k] for k in TRAINING_STATUS_KEYS if k in s}
                for name, s in (("ledi", ledi_status), ("gaussian", gaussian_status))}
    # Converged: its quality shows no trend beyond the noise over the last quarter of training (the plateau rule's
    # stop alone can fall inside a slow descent); without that history, the plateau rule's stop.
    tail = gaussian_status.get("last_quarter")
    baseline_converged = tail["flat"] if tail else gaussian_status.get("stop_reason") == "plateau"
    caveat = "" if baseline_converged else (
        f" [baseline not converged: {tail['text']}]" if tail else
        " [baseline not converged: it hit its step cap before its quality plateau]")
    metric, conf = ev.primary_metric, ev.bootstrap.confidence
    fixed_solvers = [s for s in ev.solvers if s != "dopri5"]
    fixed = [r for r in rows if r["solver"] in fixed_solvers]
    points = [PointWithInterval(f"{r['model']} {r['solver']} NFE {r['nfe']:g}", r[metric],
                                Interval(r[f"{metric}_low"], r[f"{metric}_high"])) for r in rows if r["model"] in MODELS]
    warnings = reliability_warnings(points, _point(rows, metric, FLOOR), _point(rows, metric, NOISE),
                                    judge_metrics.get("validation_accuracy"),
                                    min_noise_to_floor=ev.reliability.min_noise_to_floor,
                                    min_judge_accuracy=ev.reliability.min_judge_accuracy, n_samples=ev.n_samples)
    copying, copy_warnings = _memorisation_summary(rows, ev)
    warnings += copy_warnings
    reliable = not warnings
    for w in warnings:
        log.warning("evaluation unreliable: %s", w)
    choice = latent_sampler_choice(latent_rows, metric, ev.latent_sweep.choice_nfe, conf) if latent_rows else {}
    metrics: dict[str, Any] = {
        "primary_metric": metric, "evaluation_reliable": reliable, "evaluation_warnings": warnings,
        "embedder": judge_metrics,
        "straightness": straightness_values,
        "confidence": conf, "interval_resamples": ev.bootstrap.resamples,
        "n_samples": ev.n_samples, "n_reference": int(ref.reference.shape[0]),
        "sampling_seeds": ev.sampling_seeds, "subset_coverage": ref.coverage,
        "training": training, "baseline_converged": baseline_converged,
        "memorisation": copying,
        "latent_sampler": {k: v for k, v in choice.items() if k not in ("recommended",)},
        "solvers": {},  # per fixed-step solver: quality and interval per model and NFE, which is better, speedups
        # Wall-clock figures differ from run to run: they live under "wallclock" only, so that the rest of
        # this file is identical when the same code, settings and data run again.
        "wallclock": {"latent_sampler_recommended": choice.get("recommended"), "solvers": {}},
    }
    wallclock = metrics["wallclock"]
    speedups = []
    for solver in dict.fromkeys(r["solver"] for r in fixed):
        ledi, base = _curve(fixed, "ledi", solver, metric), _curve(fixed, "gaussian", solver, metric)
        out: dict[str, Any] = {"quality": {}, "interval": {}, "better": {}, "speedup": {}}
        clock: dict[str, Any] = {"speedup": {}, "ms_per_image": {}}
        for label, ref_nfe in (("at_reference_nfe", ev.reference_nfe), ("vs_best_baseline", None)):
            if ref_nfe is not None and ref_nfe not in base.nfe:
                continue
            cmp = compare(ledi, base, ref_nfe, conf)
            sp, wall = cmp.nfe.point, cmp.wallclock
            text = (cmp.nfe.text() + caveat if reliable
                    else f"unreliable evaluation ({cmp.nfe.text()}): see evaluation_warnings")
            wall_text = ("unreliable evaluation: see evaluation_warnings" if not reliable
                         else wall.text() if wall else "not reached")
            speedups.append({"solver": solver, "reference": label, "reference_nfe": sp.reference_nfe,
                             "reference_quality": sp.reference_quality, "status": sp.status if reliable else "unreliable",
                             "matched_nfe": sp.matched_nfe, "speedup": sp.speedup, "speedup_text": text,
                             "wallclock_speedup": wall.speedup if wall else None,
                             "wallclock_text": wall_text,
                             "ledi_ms_per_image": 1e3 * wall.ledi_seconds if wall else None,
                             "ledi_x0_ms_per_image": 1e3 * wall.ledi_x0_seconds if wall else None,
                             "baseline_ms_per_image": 1e3 * wall.baseline_seconds if wall else None})
            # a lower bound (the grid's floor) is never reported as a number
            number = reliable and sp.status == "reached"
            out["speedup"][label] = {"text": text, "value": round(sp.speedup, 4) if number else None}
            clock["speedup"][label] = {"text": wall_text,
                                       "value": round(wall.speedup, 4) if number and wall else None}
        matched = matched_quality(ledi, base, conf)
        out["matched_quality"] = [
            {"level_nfe": m.level_nfe, "level": _r(m.level), "baseline_nfe": _r(m.baseline_nfe, 3),
             "ledi_nfe": _r(m.ledi_nfe, 3), "status": m.status if reliable else "unreliable",
             "nfe_ratio": _r(m.nfe_ratio, 4) if reliable else None,
             "nfe_ratio_interval": [_r(v, 4) for v in m.nfe_ratio_interval] if reliable else None,
             "text": m.text() if reliable else "unreliable evaluation: see evaluation_warnings"} for m in matched]
        clock["matched_quality_seconds_ratio"] = {
            f"{m.level_nfe:g}": _r(m.seconds_ratio, 4) if reliable else None for m in matched}
        lead = cheapest_beats_best(ledi, base, conf)
        if lead is not None and reliable:
            out["cheapest_beats_best"] = {"ledi_nfe": lead.ledi_nfe, "baseline_nfe": lead.baseline_nfe,
                                          "gap": _r(lead.baseline_quality - lead.ledi_quality),
                                          "gap_interval": [_r(lead.gap.low), _r(lead.gap.high)],
                                          "beyond_noise": lead.beyond_noise, "text": lead.text(metric)}
        out["better"] = {str(n): who if reliable else "unreliable" for n, who in better_per_nfe(ledi, base, conf).items()}
        for model, c in (("ledi", ledi), ("gaussian", base)):
            sub = sorted((r for r in fixed if r["model"] == model and r["solver"] == solver), key=lambda r: r["nfe"])
            out["quality"][model] = {str(int(n)): _r(q) for n, q in zip(c.nfe, c.quality)}
            out["interval"][model] = {str(int(r["nfe"])): [_r(r[f"{metric}_low"]), _r(r[f"{metric}_high"])] for r in sub}
            clock["ms_per_image"][model] = {str(int(n)): _r(1e3 * t, 4) for n, t in zip(c.nfe, c.seconds)}
        clock["ledi_x0_ms_per_image"] = _r(1e3 * sum(ledi.x0_seconds) / len(ledi.x0_seconds), 4)
        metrics["solvers"][solver], wallclock["solvers"][solver] = out, clock
    metrics["sanity"] = {r["model"]: {"quality": _r(r[metric]), "interval": [_r(r[f"{metric}_low"]), _r(r[f"{metric}_high"])]}
                         for r in rows if r["solver"] == "none"}
    if ev.sampling_seeds > 1:
        stds = [r[f"{metric}_seed_std"] for r in fixed if r.get(f"{metric}_seed_std") is not None]
        metrics["max_seed_std"] = _r(max(stds)) if stds else None
    return Summary(metrics, speedups)


def verdict_lines(metrics: dict[str, Any], rows: list[dict[str, Any]], latent_rows: list[dict[str, Any]],
                  speedups: list[dict[str, Any]]) -> list[str]:
    """The comparison as Markdown (what the benchmarks print): FD with intervals per NFE, the speedups, the
    latent-sampler table with the encoder-code rows, the memorisation check and where each model stopped."""
    metric = metrics["primary_metric"]
    conf = round(100 * metrics["confidence"])
    out = []
    if not metrics["evaluation_reliable"]:
        out += ["**EVALUATION UNRELIABLE**: " + " ".join(f"({i + 1}) {w}." for i, w in
                                                       enumerate(metrics["evaluation_warnings"])), ""]
    for name, s in metrics["training"].items():
        out.append(f"- {name}: stopped at step {s.get('steps')} of {s.get('step_cap')} "
                   f"({s.get('stop_reason', 'not monitored')}); best monitored {metric} {_fmt(s.get('best_quality'))}"
                   + (f"; last quarter: {s['last_quarter']['text']}" if s.get("last_quarter") else ""))
    judge = metrics["embedder"]
    out += [f"- judge: {judge.get('embedder')}, validation accuracy {_fmt(judge.get('validation_accuracy'))}", ""]
    nfes = sorted({int(r["nfe"]) for r in rows if r["model"] in MODELS and r["solver"] != "dopri5"})
    out += [f"{metric} ({conf}% interval), {metrics['n_samples']} generated vs {metrics['n_reference']} held-out images:",
            "", "| solver | model | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|---|" + "---|" * len(nfes)]
    for solver in dict.fromkeys(r["solver"] for r in rows if r["model"] in MODELS and r["solver"] != "dopri5"):
        for model in MODELS:
            cells = {int(r["nfe"]): f"{_fmt(r[metric])} ({_fmt(r[f'{metric}_low'])}-{_fmt(r[f'{metric}_high'])})"
                     for r in rows if r["model"] == model and r["solver"] == solver}
            out.append(f"| {solver} | {model} | " + " | ".join(cells.get(n, "-") for n in nfes) + " |")
    sanity = {r["model"]: r for r in rows if r["solver"] == "none"}
    out += ["", "Sanity rows: " + "; ".join(
        f"{name} {_fmt(r[metric])} ({_fmt(r[f'{metric}_low'])}-{_fmt(r[f'{metric}_high'])})" for name, r in sanity.items()),
        ""]
    out += matched_quality_lines(metrics)
    out += ["", "Beside it, the speedup against one reference point of the baseline (its NFE-64 point, its best):", "",
            "| solver | reference | speedup in NFE | in seconds |", "|---|---|---|---|"]
    out += [f"| {s['solver']} | {s['reference']} (NFE {_fmt(s['reference_nfe'])}, {metric} "
            f"{_fmt(s['reference_quality'])}) | {s['speedup_text']} | {s['wallclock_text']} |" for s in speedups]
    out.append("")
    for solver, comparison in metrics["solvers"].items():
        if "cheapest_beats_best" in comparison:
            out.append(f"- {solver}: {comparison['cheapest_beats_best']['text']}")
        out.append(f"- better beyond the noise ({solver}): "
                   + ", ".join(f"NFE {n}: {who}" for n, who in comparison["better"].items()))
    if latent_rows:
        out += ["", *latent_sampler_table(latent_rows, metric, metrics["confidence"])]
        choice = metrics.get("latent_sampler", {})
        if choice:
            shipped = ("the shipped setting is not in the sweep" if "configured" not in choice else
                       f"shipped {choice['configured']} ({_fmt(choice['configured_quality'])}; minus the best: "
                       f"{_fmt(choice['configured_minus_best'][0])} to {_fmt(choice['configured_minus_best'][1])}, "
                       f"{'within' if choice['configured_within_noise_of_best'] else 'beyond'} the noise)")
            out += ["", f"- at image NFE {choice['image_nfe']}: best {choice['best']} ({_fmt(choice['best_quality'])}); "
                        f"{shipped}; the cheapest setting within the noise of the best: "
                        f"{metrics['wallclock'].get('latent_sampler_recommended')}"]
    out += memorisation_lines(metrics.get("memorisation", {}))
    return out


def matched_quality_lines(metrics: dict[str, Any]) -> list[str]:
    """The matched-quality table as Markdown: per solver and quality level (the baseline's running-best quality at
    each NFE of its grid), the NFE each model's running-best curve needs and their ratio in NFE (interval over the
    paired replicates) and in seconds per image (LeDiFlow's x0 included)."""
    metric, conf = metrics["primary_metric"], round(100 * metrics["confidence"])
    out = [f"Matched quality: the NFE each model's running-best curve needs to reach the baseline's running-best {metric} "
           f"at each NFE of its grid, and the ratio baseline / LeDiFlow ({conf}% interval over paired replicates):", "",
           f"| solver | level (baseline at NFE) | {metric} | baseline needs | LeDiFlow needs | ratio in NFE | "
           "ratio in seconds |", "|---|---|---|---|---|---|---|"]
    clock = metrics.get("wallclock", {}).get("solvers", {})
    for solver, comparison in metrics["solvers"].items():
        seconds = clock.get(solver, {}).get("matched_quality_seconds_ratio", {})
        for m in comparison.get("matched_quality", []):
            ratio_s = seconds.get(f"{m['level_nfe']:g}")
            out.append(f"| {solver} | {m['level_nfe']:g} | {_fmt(m['level'])} | {_fmt(m['baseline_nfe'])} | "
                       f"{_fmt(m['ledi_nfe'])} | {m['text']} | {'-' if ratio_s is None else f'{ratio_s:.2f}x'} |")
    return out


def memorisation_lines(mem: dict[str, Any]) -> list[str]:
    """The memorisation check as Markdown bullets: per model and feature space, the worst point's share of samples
    nearer to a training image than 95% of held-out images, against its calibrated limit."""
    if not any(isinstance(v, dict) for v in mem.values()):
        return ["", "- memorisation: not checked (no held-out images outside the evaluation's reference: lower "
                    "evaluate.n_reference)"]
    lines = [f"- memorisation, {m} ({space}): at most {100 * e['close_fraction']:.1f}% of samples nearer than 95% of "
             f"held-out images (worst point {e['worst_point']}; limit {100 * e['limit']:.1f}% over {e['points']} "
             f"points, adjusted p = {e['p_value_adjusted']:.2g}): {'COPIES' if e['copies'] else 'no copying found'}"
             for m, by_space in mem.items() if isinstance(by_space, dict) for space, e in by_space.items()]
    return ["", *lines] if lines else []


def latent_sampler_table(latent_rows: list[dict[str, Any]], metric: str, confidence: float) -> list[str]:
    """LeDiFlow's start as Markdown: one row per latent sampler setting (and the encoder-code rows), one column
    per image solver and NFE, each cell the quality with its interval and the time per image."""
    columns = list(dict.fromkeys((r["image_nfe"], r["image_solver"]) for r in latent_rows))
    settings = list(dict.fromkeys((r["sample_solver"], r["sample_steps"]) for r in latent_rows))
    out = [f"LeDiFlow's start: {metric} ({round(100 * confidence)}% interval) and ms per image (x0 included) at "
           "each image solver and NFE:", "",
           "| latent sampler | latent NFE | " + " | ".join(f"{s} @ {n}" for n, s in columns) + " |",
           "|---|---|" + "---|" * len(columns)]
    for solver, steps in settings:
        cells = {r["image_nfe"]: r for r in latent_rows if (r["sample_solver"], r["sample_steps"]) == (solver, steps)}
        first = next(iter(cells.values()))
        label = f"{solver} x {steps}" + (" (shipped)" if first["configured"] else "")
        if str(solver).startswith("codes:"):
            label = f"encoder codes of {'training' if solver == CODES_TRAIN else 'held-out'} images"
        out.append(f"| {label} | {_fmt(first['latent_nfe'])} | " + " | ".join(
            f"{_fmt(c[metric])} ({_fmt(c[f'{metric}_low'])}-{_fmt(c[f'{metric}_high'])}), {c['ms_per_image']:.3g} ms"
            if (c := cells.get(n)) else "-" for n, _ in columns) + " |")
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else str(v)
    return str(v)

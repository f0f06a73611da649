"""Thin nodes over core.evaluation, core.metrics and core.speedup."""

from __future__ import annotations

import logging

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ledi_kedro.core.distributed import resolve_device  # noqa: E402
from ledi_kedro.core.embedders import ClipEmbedder, DomainEmbedder  # noqa: E402
from ledi_kedro.core.evaluation import QualitySpec, SweepConfig, prior_only_features, quality, sweep  # noqa: E402
from ledi_kedro.core.metrics import median_heuristic_sigma  # noqa: E402
from ledi_kedro.core.models import AutoencoderConfig, ClassifierConfig, DomainClassifier, KLAutoencoder  # noqa: E402
from ledi_kedro.core.registry import TrainedModel  # noqa: E402
from ledi_kedro.core.sampling import straightness  # noqa: E402
from ledi_kedro.core.speedup import matched_quality_speedup, reference_from_curve  # noqa: E402
from ledi_kedro.core.system import make_sampler  # noqa: E402
from ledi_kedro.core.tasks import as_float, autoencoder_loss  # noqa: E402
from ledi_kedro.params import EvaluateParams, parse, with_run  # noqa: E402
from ledi_kedro.pipelines.training import run_training  # noqa: E402

log = logging.getLogger(__name__)
MODELS = ("ledi", "gaussian")


def _params(evaluate: dict) -> EvaluateParams:
    return parse("evaluate", evaluate)


def _classifier_loss(model, batch, g):
    logits = model(batch["images"])
    loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
    return loss, {"accuracy": (logits.argmax(1) == batch["labels"]).float().mean()}


def train_quality_embedder(train_image_tensors: dict[str, Any], test_image_tensors: dict[str, Any], evaluate: dict,
                           run: dict) -> tuple[TrainedModel, dict[str, Any]]:
    """The embedding for quality metrics: CLIP (checked now, so a missing download fails fast), or a
    `domain` classifier trained on the data set's labels (an autoencoder when there are none)."""
    ev, run_p = _params(evaluate), parse("run", run)
    emb = ev.embedder
    device = resolve_device(run_p.device)
    if emb.kind == "clip":
        ClipEmbedder(emb.clip_model, emb.clip_weights, device, image_size=emb.clip_image_size)
        cfg = {"model": emb.clip_model, "weights": emb.clip_weights, "image_size": emb.clip_image_size}
        return TrainedModel("clip", cfg, None, None, {}), {"embedder": f"clip:{emb.clip_model}"}
    images, labels = train_image_tensors["images"], train_image_tensors["labels"]
    channels, res = int(images.shape[1]), int(images.shape[-1])
    train = with_run(emb.train, run_p, offset=5)
    n_classes = int(labels.max()) + 1 if labels.numel() and int(labels.min()) >= 0 else 0
    if n_classes >= 2:
        cfg = ClassifierConfig(in_channels=channels, resolution=res, num_classes=n_classes, width=emb.domain_width,
                               feature_dim=emb.domain_feature_dim)
        result = run_training("domain_classifier", lambda: DomainClassifier(cfg), _classifier_loss,
                              {"images": images, "labels": labels.long()}, train, run_p, cfg.to_dict())
        model = result.ema.eval()
        with torch.no_grad():
            test_x, test_y = test_image_tensors["images"], test_image_tensors["labels"].long()
            correct = sum(int((model(as_float(test_x[i:i + 512]).to(device)).argmax(1).cpu() == test_y[i:i + 512]).sum())
                          for i in range(0, len(test_x), 512))
        acc = correct / max(len(test_x), 1)
        log.info("domain classifier: test accuracy %.4f on %d images", acc, len(test_x))
        return (TrainedModel("classifier", cfg, result.model, result.ema, {}),
                {"embedder": "domain:classifier", "test_accuracy": acc, "n_test": len(test_x)})
    cfg = AutoencoderConfig(in_channels=channels, latent_channels=4, base_channels=emb.domain_width, levels=2)
    result = run_training("domain_autoencoder", lambda: KLAutoencoder(cfg), autoencoder_loss(1e-6),
                          {"images": images}, train, run_p, cfg.to_dict())
    return TrainedModel("autoencoder", cfg, result.model, result.ema, {}), {"embedder": "domain:autoencoder"}


def build_embedder(model: TrainedModel, device: torch.device):
    """The embedding function for a `quality_embedder` record (CLIP or a domain network)."""
    if model.kind == "clip":
        cfg = model.config
        return ClipEmbedder(cfg["model"], cfg["weights"], device, image_size=cfg.get("image_size"))
    return DomainEmbedder(model.inference, model.kind, device)


def embed_reference(quality_embedder: TrainedModel, train_image_tensors: dict[str, Any],
                    test_image_tensors: dict[str, Any], evaluate: dict, run: dict) -> dict[str, Any]:
    """Reference features (held-out test images), train features for the real-vs-real row, and the
    MMD bandwidth: 10 for CLIP (CMMD), else the median heuristic fixed once on the reference."""
    ev, run_p = _params(evaluate), parse("run", run)
    embed = build_embedder(quality_embedder, resolve_device(run_p.device))
    test = as_float(test_image_tensors["images"][: ev.n_reference])
    train = as_float(train_image_tensors["images"][: ev.n_samples])
    ref = embed(test)
    sigma = 10.0 if quality_embedder.kind == "clip" else median_heuristic_sigma(ref)
    return {"reference": ref, "train": embed(train), "sigma": sigma, "embedder": embed.name}


def _samplers(ledi: TrainedModel, gaussian: TrainedModel, prior: TrainedModel, latent_flow: TrainedModel,
              autoencoder: TrainedModel, device: torch.device) -> dict[str, Any]:
    return {"ledi": make_sampler(ledi, prior, latent_flow, autoencoder, device, precision="bf16"),
            "gaussian": make_sampler(gaussian, None, None, autoencoder, device, precision="bf16")}


def sweep_quality(ledi_model: TrainedModel, gaussian_model: TrainedModel, prior_model: TrainedModel,
                  latent_flow_model: TrainedModel, autoencoder_model: TrainedModel, quality_embedder: TrainedModel,
                  reference_features: dict[str, Any], evaluate: dict, run: dict) -> tuple[pl.DataFrame, dict]:
    """Quality and wall-clock for both models x solvers x NFE, plus the sanity rows."""
    ev, run_p = _params(evaluate), parse("run", run)
    device = resolve_device(run_p.device)
    samplers = _samplers(ledi_model, gaussian_model, prior_model, latent_flow_model, autoencoder_model, device)
    embed = build_embedder(quality_embedder, device)
    ref = reference_features["reference"]
    spec = QualitySpec(sigma=reference_features["sigma"], scale=1000.0,
                       kid_subset=min(1000, ev.n_samples, ref.shape[0]), kid_subsets=20)
    cfg = SweepConfig(tuple(ev.nfe_grid), tuple(s for s in ev.solvers if s != "dopri5"),
                      tuple(ev.adaptive_rtols) if "dopri5" in ev.solvers else (),
                      ev.n_samples, ev.batch_size, ev.seed)
    result = sweep(samplers, embed, ref, spec, cfg, progress=log.info)
    rows = result.rows
    sanity = {
        "real_train": reference_features["train"],
        "prior_x0": prior_only_features(samplers["ledi"], embed, ev.n_samples, ev.batch_size, ev.seed),
        "gaussian_noise": embed(_noise_images(samplers["gaussian"], ev.n_samples, ev.seed)),
    }
    for name, feats in sanity.items():
        row = {"model": name, "solver": "none", "nfe_requested": 0, "rtol": None, "nfe": 0.0, "prior_nfe": 0.0,
               "seconds_per_image": None}
        row.update(quality(feats, ref, spec))
        rows.append(row)
        log.info("sanity %-15s FD %.3f  MMD %.3f", name, row["fd"], row["mmd"])
    table = pl.DataFrame(rows, schema_overrides={"nfe_requested": pl.Int64, "rtol": pl.Float64,
                                                 "seconds_per_image": pl.Float64}, infer_schema_length=None)
    table = table.with_columns(pl.lit(reference_features["embedder"]).alias("embedder"),
                               pl.lit(spec.sigma).alias("mmd_sigma"))
    return table, result.examples


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


def summarize(sweep_results: pl.DataFrame, straightness_values: dict[str, float], embedder_metrics: dict[str, Any],
              evaluate: dict) -> tuple[dict[str, Any], pl.DataFrame]:
    """DVC metrics (metrics.json) and the per-solver speedup table."""
    ev = _params(evaluate)
    metric = ev.primary_metric
    rows, metrics = [], {"primary_metric": metric, "embedder": embedder_metrics, "straightness": straightness_values}
    fixed = sweep_results.filter(pl.col("solver").is_in([s for s in ev.solvers if s != "dopri5"]))
    for solver in fixed["solver"].unique(maintain_order=True).to_list():
        curves = {}
        for model in MODELS:
            c = fixed.filter((pl.col("model") == model) & (pl.col("solver") == solver)).sort("nfe")
            curves[model] = (c["nfe"].to_list(), c[metric].to_list())
        base_nfe, base_q = curves["gaussian"]
        ledi_nfe, ledi_q = curves["ledi"]
        for label, ref_nfe in (("at_reference_nfe", ev.reference_nfe), ("vs_best_baseline", None)):
            if ref_nfe is not None and ref_nfe not in base_nfe:
                continue
            n_ref, q_ref = reference_from_curve(base_nfe, base_q, ref_nfe)
            sp = matched_quality_speedup(ledi_nfe, ledi_q, q_ref, n_ref)
            rows.append({"solver": solver, "reference": label, "reference_nfe": n_ref, "reference_quality": q_ref,
                         "status": sp.status, "matched_nfe": sp.matched_nfe, "speedup": sp.speedup,
                         "speedup_text": sp.text()})
            metrics[f"speedup_{solver}_{label}"] = sp.text()
            if sp.status == "reached":  # a lower bound (at the grid's floor) is never reported as a number
                metrics[f"speedup_{solver}_{label}_value"] = round(sp.speedup, 4)
        ratios = {}
        for n, q in zip(ledi_nfe, ledi_q):
            if n in base_nfe and q > 0:
                ratios[str(int(n))] = round(base_q[base_nfe.index(n)] / q, 4)
        metrics[f"quality_ratio_{solver}"] = ratios
        for model in MODELS:
            nfe, q = curves[model]
            metrics[f"{metric}_{model}_{solver}"] = {str(int(n)): round(v, 5) for n, v in zip(nfe, q)}
    sanity = sweep_results.filter(pl.col("solver") == "none")
    for r in sanity.iter_rows(named=True):
        metrics[f"sanity_{r['model']}_{metric}"] = round(r[metric], 5)
    metrics["n_samples"] = int(fixed["n_samples"].max()) if fixed.height else 0
    metrics["n_reference"] = int(sweep_results["n_reference"].max())
    schema = {"solver": pl.String, "reference": pl.String, "reference_nfe": pl.Float64, "reference_quality": pl.Float64,
              "status": pl.String, "matched_nfe": pl.Float64, "speedup": pl.Float64, "speedup_text": pl.String}
    return metrics, pl.DataFrame(rows, schema=schema)


def plot_quality_vs_nfe(sweep_results: pl.DataFrame, evaluate: dict) -> Figure:
    ev = _params(evaluate)
    metric = ev.primary_metric
    solvers = [s for s in sweep_results["solver"].unique(maintain_order=True).to_list() if s != "none"]
    fig, axes = plt.subplots(1, len(solvers), figsize=(4.5 * len(solvers), 3.6), dpi=100, squeeze=False)
    sanity = sweep_results.filter(pl.col("solver") == "none")
    for ax, solver in zip(axes[0], solvers):
        for model, style in (("ledi", "o-"), ("gaussian", "s--")):
            c = sweep_results.filter((pl.col("model") == model) & (pl.col("solver") == solver)).sort("nfe")
            ax.plot(c["nfe"].to_list(), c[metric].to_list(), style, label="LeDiFlow" if model == "ledi" else "Gaussian")
        for r in sanity.iter_rows(named=True):
            if r["model"] == "real_train":
                ax.axhline(r[metric], color="grey", lw=0.8, ls=":", label="real (train vs test)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("NFE (image flow)")
        ax.set_ylabel(f"{metric} ({sweep_results['embedder'][0]})")
        ax.set_title(solver)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _grid(ax, images: torch.Tensor, title: str = "") -> None:
    imgs = ((images.float().clamp(-1, 1) + 1) / 2).cpu()
    n, c, h, w = imgs.shape
    row = imgs.permute(2, 0, 3, 1).reshape(h, n * w, c)
    row = row.numpy()
    ax.imshow(row.squeeze(-1) if c == 1 else row, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
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
    x0, _, _ = ledi.prior(n, torch.Generator(device=device).manual_seed(ev.seed))
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
    known = as_float(test_model_input["images"][:m]).to(device)
    mask = torch.zeros_like(known[:1])
    mask[..., : known.shape[-1] // 2] = 1  # left half known
    fig_n, ax = plt.subplots(4, 1, figsize=(m * 0.8 + 1, 4.2), dpi=100)
    _grid(ax[0], finish(known), "original")
    _grid(ax[1], finish(known * mask), "known (left half)")
    _grid(ax[2], ledi.inpaint(known, mask, nfe=steps * 2, solver="midpoint", seed=ev.seed).images, "LeDiFlow inpainting")
    _grid(ax[3], gauss.inpaint(known, mask, nfe=steps * 2, solver="midpoint", seed=ev.seed).images, "Gaussian inpainting")
    fig_n.tight_layout()
    return fig_p, fig_i, fig_n

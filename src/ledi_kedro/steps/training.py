"""Each trained part of the chain as one function: the judge, the autoencoder (latent space), the prior,
the latent sampler and the image flow models (LeDiFlow and the Gaussian baseline).

Training reads the train split; everything that watches or chooses (the plateau monitors, the held-out loss,
the warmth's choice) reads the validation split, each purpose its own block of it
(:data:`~ledi_kedro.core.subsets.VALIDATION_PURPOSES`); nothing here reads the test split. Every seed derives from
``run.seed`` (:func:`~ledi_kedro.core.subsets.derive_seed`), the judge's from ``embedder.seed``.

Every step trains through :func:`run_training`, the project's checkpoint policy: checkpoints under
``run.checkpoint_root/<name>``, resumed when the settings, data and code match, retrained (or an error,
``run.on_config_change``) when they do not. Each returns the :class:`TrainedModel` record that the
pipelines save, with the :class:`TrainResult` whose histories the nodes turn into tables and plots.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ledi_kedro.core.artifacts import (
    FlowRecord, LatentSamplerRecord, TrainedModel, load_autoencoder, make_generator, make_source,
)
from ledi_kedro.core.checkpoint import CheckpointError
from ledi_kedro.core.data.tensors import as_float
from ledi_kedro.core.distributed import barrier, dist_info, resolve_device
from ledi_kedro.core.embedders import (
    PRETRAINED_JUDGE, PRETRAINED_NAME, ClipEmbedder, InceptionEmbedder, build_embedder, pretrained_judge,
)
from ledi_kedro.core.encoding import encode_latents, encode_moments, fit_latent_scale
from ledi_kedro.core.generation import Generator
from ledi_kedro.core.sweeps import choose_warmth, flow_quality_monitor, latent_quality_monitor
from ledi_kedro.core.metrics.model_quality import classifier_accuracy, prior_metrics, reconstruction_psnr
from ledi_kedro.core.metrics.trend import tail_trend
from ledi_kedro.core.models import DiT, DomainClassifier, KLAutoencoder, LatentFlow, PriorModel
from ledi_kedro.core.models.autoencoder import AutoencoderConfig
from ledi_kedro.core.objectives import (
    autoencoder_loss, classifier_loss, fm_objective, latent_flow_loss, prior_loss,
)
from ledi_kedro.core.subsets import VALIDATION_PURPOSES, derive_seed, purpose_rows, seeded_rows
from ledi_kedro.core.trainer import (
    EvaluateFn, LossFn, TrainConfig, Trainer, TrainResult, data_fingerprint, plateau_reached,
)
from ledi_kedro.params import (
    AutoencoderParams, EmbedderParams, FMParams, FMVariant, LatentFlowParams, PriorParams, RunParams, with_run,
)

log = logging.getLogger(__name__)

UNLABELED_NOTE = ("no labels: the judge is an autoencoder bottleneck; its figures compare models on this data set "
                  "only, never with other data sets or published numbers")
PRETRAINED_NOTE = ("a judge no model of this project shaped: third-party CIFAR-10 weights; its figures compare "
                   "across projects that use the same weights (on the same data), unlike a trained judge's")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def run_training(name: str, make_model: Callable[[], nn.Module], loss_fn: LossFn, data: dict[str, torch.Tensor],
                 train: TrainConfig, run: RunParams, model_config: dict[str, Any],
                 evaluate_fn: EvaluateFn | None = None, evaluate_key: dict[str, Any] | None = None) -> TrainResult:
    """Train (or resume, or skip when finished) with checkpoints in ``run.checkpoint_root/name``; ``evaluate_key``
    says what ``evaluate_fn`` measures (a checkpoint of another measure is stale, see ``core.trainer``).

    When the settings, the data or the code changed since the checkpoints were written (or they
    went past ``steps``, or they no longer load), ``run.on_config_change`` decides: ``restart``
    deletes them and trains afresh, ``error`` stops and says what changed.
    """
    ckpt_dir = Path(run.checkpoint_root) / name

    def fit() -> TrainResult:
        torch.manual_seed(train.seed)  # the same initial weights for the same seed
        return Trainer(make_model(), loss_fn, data, train, checkpoint_dir=ckpt_dir, model_config=model_config,
                       name=name, evaluate_fn=evaluate_fn, evaluate_key=evaluate_key).fit()

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


# ---------------------------------------------------------------- the judge
def train_judge(train_images: dict[str, Any], validation_images: dict[str, Any], emb: EmbedderParams,
                run: RunParams) -> tuple[TrainedModel, dict[str, Any], TrainResult | None]:
    """The quality judge's record, its metrics (accuracy on the validation split, training time) and its training
    result (None for CLIP and Inception, whose weights are checked, not trained). Its seed is ``embedder.seed``,
    not ``run.seed``: every replicate of a run is measured by the same judge."""
    device = resolve_device(run.device)
    if emb.kind == "clip":  # checked now, so that missing weights fail before any training
        ClipEmbedder(emb.clip_model, emb.clip_weights, device, image_size=emb.clip_image_size)
        cfg = {"model": emb.clip_model, "weights": emb.clip_weights, "image_size": emb.clip_image_size}
        return TrainedModel("clip", cfg, None, None, {}), {"embedder": f"clip:{emb.clip_model}"}, None
    if emb.kind == "inception":
        InceptionEmbedder(emb.inception_weights, device)
        return (TrainedModel("inception", {"weights": emb.inception_weights}, None, None, {}),
                {"embedder": "inception:fid"}, None)
    if emb.kind == "cifar10_resnet56":
        return _pretrained_judge(validation_images, emb, device, "embedder.kind is cifar10_resnet56")
    images, labels = train_images["images"], train_images["labels"]
    channels, res = int(images.shape[1]), int(images.shape[-1])
    train = replace(with_run(emb.train, run, "judge"), seed=derive_seed(emb.seed, "train/judge"))
    n_classes = int(labels.max()) + 1 if labels.numel() and int(labels.min()) >= 0 else 0
    if n_classes < 2 and channels == 3 and Path(emb.pretrained_weights).expanduser().is_file():
        return _pretrained_judge(validation_images, emb, device, "no labels to train a classifier on, and colour images: "
                                 "the pretrained CIFAR-10 ResNet-56 separates noise from data far better than an "
                                 "autoencoder bottleneck")
    if n_classes >= 2:
        cfg = replace(emb.model, in_channels=channels, resolution=res, num_classes=n_classes)
        result = run_training("quality_embedder", lambda: DomainClassifier(cfg),
                              classifier_loss(emb.augment.hflip, emb.augment.crop_padding),
                              {"images": images, "labels": labels.long()}, train, run,
                              {**cfg.to_dict(), "augment": vars(emb.augment)})
        val_x, val_y = validation_images["images"], validation_images["labels"]
        acc = classifier_accuracy(result.ema, val_x, val_y, device)
        log.info("quality judge (domain classifier): validation accuracy %.4f on %d images after %d steps",
                 acc, len(val_x), result.steps)
        metrics = {"embedder": "domain:classifier", "validation_accuracy": round(acc, 5),
                   "n_validation": int(len(val_x)),
                   "n_train": int(len(images)), "n_classes": n_classes, "steps": result.steps}
        return TrainedModel("classifier", cfg, result.model, result.ema, {}), metrics, result
    why = (f"no labels and {channels}-channel images: an autoencoder bottleneck (the pretrained judge takes "
           "colour images)" if channels != 3 else
           f"no labels and no pretrained judge at embedder.pretrained_weights={emb.pretrained_weights}: an "
           "autoencoder bottleneck")
    cfg = AutoencoderConfig(in_channels=channels, latent_channels=4, base_channels=emb.model.width, levels=2)
    result = run_training("quality_embedder", lambda: KLAutoencoder(cfg), autoencoder_loss(1e-6),
                          {"images": images}, train, run, cfg.to_dict())
    log.warning("quality judge: %s; %s", why, UNLABELED_NOTE)
    metrics = {"embedder": "domain:autoencoder", "why": why, "note": UNLABELED_NOTE, "n_train": int(len(images)),
               "steps": result.steps}
    return TrainedModel("autoencoder", cfg, result.model, result.ema, {}), metrics, result


def _pretrained_judge(validation_images: dict[str, Any], emb: EmbedderParams, device: torch.device,
                      why: str) -> tuple[TrainedModel, dict[str, Any], None]:
    """The CIFAR-10 ResNet-56 judge's record, checked: on a CIFAR-10 validation split (its ten class names) it
    must classify at least ``min_pretrained_accuracy`` of the images, or the run stops before anything is
    trained."""
    judge = pretrained_judge(emb.pretrained_weights)  # a missing or wrong file fails here, naming it
    metrics: dict[str, Any] = {"embedder": PRETRAINED_NAME, "weights": str(emb.pretrained_weights), "why": why,
                               "note": PRETRAINED_NOTE}
    names = validation_images.get("__metadata__", {}).get("class_names")
    if names == CIFAR10_CLASSES:
        acc = classifier_accuracy(judge, validation_images["images"], validation_images["labels"], device)
        metrics |= {"validation_accuracy": round(acc, 5), "n_validation": int(len(validation_images["images"]))}
        log.info("quality judge (pretrained CIFAR-10 ResNet-56): validation accuracy %.4f on %d images", acc,
                 metrics["n_validation"])
        if acc < emb.min_pretrained_accuracy:
            raise ValueError(
                f"the pretrained judge {emb.pretrained_weights} classifies {acc:.3f} of the "
                f"{metrics['n_validation']} CIFAR-10 validation images correctly, below embedder.min_pretrained_accuracy="
                f"{emb.min_pretrained_accuracy}: wrong weights, or the images are not what it was trained on")
    else:
        log.info("quality judge (pretrained CIFAR-10 ResNet-56): %s; its accuracy is checked on CIFAR-10 only", why)
    return TrainedModel(PRETRAINED_JUDGE, {"weights": str(emb.pretrained_weights)}, None, None, {}), metrics, None


# ---------------------------------------------------------------- latent space
def train_autoencoder(train_images: dict[str, Any], ae: AutoencoderParams,
                      run: RunParams) -> tuple[TrainedModel, TrainResult | None]:
    """Train the KL autoencoder, or describe the pretrained one; pixel space gets an identity record."""
    images = train_images["images"]
    channels = int(images.shape[1])
    if run.space == "pixel" or ae.kind == "none":
        log.info("run.space=%s: no autoencoder, the model input is the image tensors themselves", run.space)
        return TrainedModel("identity", {}, None, None, {"space": "pixel"}), None
    device = resolve_device(run.device)
    if ae.kind == "pretrained":
        from ledi_kedro.core.models.pretrained import DiffusersAutoencoder

        module = DiffusersAutoencoder(ae.pretrained_path, channels).to(device)
        if module.downsampling != ae.downsampling() or module.latent_channels != 4:
            raise ValueError(
                f"autoencoder.pretrained_path {ae.pretrained_path}: {module.latent_channels} latent channels and "
                f"downsampling {module.downsampling}; the project expects 4 and {ae.downsampling()} (SD-style VAEs)")
        scale = fit_latent_scale(module, images, device, seed=derive_seed(run.seed, "latent_scale"))
        config = {"path": str(ae.pretrained_path), "image_channels": channels, "scale": scale}
        return TrainedModel("diffusers_autoencoder", config, None, None, {"scale": scale}), None
    cfg = replace(ae.model, in_channels=channels)
    result = run_training("autoencoder", lambda: KLAutoencoder(cfg), autoencoder_loss(ae.kl_weight),
                          {"images": images}, with_run(ae.train, run, "autoencoder"), run, cfg.to_dict())
    scale = fit_latent_scale(result.ema, images, result.ema.scale.device, seed=derive_seed(run.seed, "latent_scale"))
    for module in (result.model, result.ema):
        module.scale.fill_(scale)
    return TrainedModel("autoencoder", cfg, result.model, result.ema, {"scale": scale}), result


def training_subset(split: dict[str, Any], limit: int | None, seed: int) -> dict[str, Any]:
    """A seeded random subset of ``limit`` rows (``run.max_train_images``; kept in their original order)."""
    n = int(split["images"].shape[0])
    if limit is None or limit >= n:
        return split
    log.info("run.max_train_images=%d: training on a seeded subset of %d of %d images", limit, limit, n)
    return seeded_rows(split, limit, derive_seed(seed, "training_subset"))


def model_input(autoencoder_model: TrainedModel, images: dict[str, Any], run: RunParams) -> dict[str, Any]:
    """One split as the prior and flow models see it: encoded once by the autoencoder (the "VAE latent caching"
    step), or the images themselves in pixel space."""
    device = resolve_device(run.device)
    module = load_autoencoder(autoencoder_model, device)
    if module is None:
        return dict(images, __metadata__={**images.get("__metadata__", {}), "space": "pixel"})
    return {"images": encode_latents(module, images["images"], device), "labels": images["labels"],
            "__metadata__": {**images.get("__metadata__", {}), "space": "latent"}}


def model_inputs(autoencoder_model: TrainedModel, train_images: dict[str, Any], validation_images: dict[str, Any],
                 run: RunParams) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What the prior and flow models train on and are watched with: the train split limited to
    ``run.max_train_images`` (a seeded subset) and the validation split, each through :func:`model_input`.
    Returns (train, validation, metrics). The test split is encoded by the evaluation alone."""
    train_images = training_subset(train_images, run.max_train_images, run.seed)
    train, validation = (model_input(autoencoder_model, split, run) for split in (train_images, validation_images))
    device = resolve_device(run.device)
    module = load_autoencoder(autoencoder_model, device)
    if module is None:
        return train, validation, {"space": "pixel", "n_train": int(train_images["images"].shape[0])}
    psnr = reconstruction_psnr(module, validation_images["images"], device)
    lat = train["images"]
    log.info("Cached latents %s (std %.3f); validation reconstruction PSNR %.2f dB", tuple(lat.shape),
             float(lat.std()), psnr)
    metrics = {"space": "latent", "validation_psnr_db": round(psnr, 3), "latent_shape": list(lat.shape[1:]),
               "latent_std": round(float(lat.std()), 4), "scale": float(module.scale), "n_train": int(lat.shape[0])}
    return train, validation, metrics


def monitor_rows(validation: dict[str, Any], purpose: str, n: int, run: RunParams, what: str) -> dict[str, Any]:
    """``n`` rows (a seeded sample) of ``purpose``'s block of the validation split (``monitor``: the plateau
    monitors; ``selection``: the choices); an error naming ``what`` needs them when the block has fewer than 2."""
    rows = purpose_rows(validation, VALIDATION_PURPOSES, purpose, n, run.seed)
    if int(rows["images"].shape[0]) < 2:
        n_val = int(validation["images"].shape[0])
        raise ValueError(f"{what} reads the validation split's {purpose} block, and it holds "
                         f"{rows['images'].shape[0]} of the split's {n_val} images: raise preprocess.validation_size "
                         "(or preprocess.max_validation_fraction)")
    return rows


# ---------------------------------------------------------------- the prior and its codes
def train_prior(train_input: dict[str, Any], validation_input: dict[str, Any], p: PriorParams,
                run: RunParams) -> tuple[TrainedModel, TrainResult]:
    """The auxiliary prior model (encoder q(z|y), decoder P_L(x|z); VGL + KL). With ``train.eval_every``
    its held-out loss (on :func:`prior_eval_rows`) is measured during training and may stop it at its plateau."""
    images = train_input["images"]
    cfg = replace(p.model, in_channels=int(images.shape[1]), resolution=int(images.shape[-1]))
    train = with_run(p.train, run, "prior")
    loss_cfg = {"loss": p.loss, "beta": p.beta, "beta_kl": p.beta_kl}
    monitor: EvaluateFn | None = None
    if train.eval_every:
        device, held_out = resolve_device(run.device), prior_eval_rows(validation_input, p, run)

        def held_out_loss(model: nn.Module, step: int) -> float:
            return prior_metrics(model, held_out["images"], p.loss, p.beta, device,
                                 seed=derive_seed(run.seed, "monitor/prior"))["loss"]

        monitor = held_out_loss
    result = run_training("prior", lambda: PriorModel(cfg), prior_loss(p.loss, p.beta_kl, p.beta),
                          {"images": images}, train, run, {**cfg.to_dict(), **loss_cfg}, monitor)
    meta = loss_cfg | {"stop_reason": result.stop_reason,
                       "quality_history": [[e["step"], e["quality"]] for e in result.eval_history]}
    return TrainedModel("prior", cfg, result.model, result.ema, meta), result


def prior_eval_rows(validation_input: dict[str, Any], p: PriorParams, run: RunParams) -> dict[str, Any]:
    """The prior's held-out images: ``eval_images`` of the validation split's monitor block."""
    return monitor_rows(validation_input, "monitor", p.eval_images, run, "the prior's held-out loss")


def encode_codes(prior_model: TrainedModel, images: dict[str, Any], run: RunParams) -> dict[str, torch.Tensor]:
    """Encoder moments (mu_z, logvar_z) of every image under the frozen prior (EMA weights). For the training
    set, computed once: the latent sampler learns to produce these codes and LeDiFlow draws its training
    priors x0 from them."""
    mu, logvar = encode_moments(prior_model.inference, images["images"], resolve_device(run.device))
    return {"mu_z": mu, "logvar_z": logvar}


# ---------------------------------------------------------------- the latent sampler
def prior_mean_images(prior_model: TrainedModel, autoencoder_model: TrainedModel,
                      device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """z -> the prior's mean image mu(z) in [-1, 1], decoded through the autoencoder in latent space: how
    the judge sees a latent code."""
    prior = prior_model.inference.to(device).eval()
    ae = load_autoencoder(autoencoder_model, device)

    @torch.no_grad()
    def images(z: torch.Tensor) -> torch.Tensor:
        mean = prior.decode(z.to(device))[0].float()
        return (ae.decode_scaled(mean) if ae is not None else mean).float().clamp(-1, 1)

    return images


def train_latent_flow(codes: dict[str, torch.Tensor], prior_model: TrainedModel, autoencoder_model: TrainedModel,
                      quality_embedder: TrainedModel, validation_input: dict[str, Any], p: LatentFlowParams,
                      run: RunParams) -> tuple[TrainedModel, TrainResult]:
    """The latent sampler: flow matching from w ~ N(0, I) to the prior encoder's codes. With
    ``train.eval_every`` it is judged through images during training (FD on the judge's features of the
    prior's mean images mu(z), codes drawn with the shipped ``sample_solver`` x ``sample_steps`` against
    codes of validation images) and may stop at its plateau."""
    cfg = replace(p.model, z_dim=int(codes["mu_z"].shape[1]))
    train = with_run(p.train, run, "latent_flow")
    meta = asdict(LatentSamplerRecord(p.time_sampler, p.sample_solver, p.sample_steps))
    monitor: EvaluateFn | None = None
    monitor_key: dict[str, Any] | None = None
    if train.eval_every:
        device = resolve_device(run.device)
        held_out = monitor_rows(validation_input, "monitor", p.monitor.n_reference, run, "the latent sampler's monitor")
        reference = encode_codes(prior_model, held_out, run)
        seed = derive_seed(run.seed, "monitor/sampling")
        monitor = latent_quality_monitor(prior_mean_images(prior_model, autoencoder_model, device),
                                         build_embedder(quality_embedder, device), reference, p.monitor.n_samples,
                                         p.sample_solver, p.sample_steps, p.monitor.batch_size, seed=seed)
        monitor_key = _monitor_key("fd of the prior's mean images", {
            "sample_solver": p.sample_solver, "sample_steps": p.sample_steps, **asdict(p.monitor), "seed": seed},
            {"judge": quality_embedder, "prior": prior_model, "autoencoder": autoencoder_model}, held_out["images"])
    result = run_training("latent_flow", lambda: LatentFlow(cfg), latent_flow_loss(p.time_sampler),
                          {"mu_z": codes["mu_z"], "logvar_z": codes["logvar_z"]}, train, run,
                          {**cfg.to_dict(), "time_sampler": p.time_sampler}, monitor, monitor_key)
    meta |= {"stop_reason": result.stop_reason, "steps": result.steps}
    return TrainedModel("latent_flow", cfg, result.model, result.ema, meta), result


def _monitor_key(measure: str, settings: dict[str, Any], models: dict[str, TrainedModel | None],
                 reference: torch.Tensor) -> dict[str, Any]:
    """What a quality monitor measures, for the trainer's checkpoints: its settings, the models it samples and
    judges with (their fingerprints) and its reference rows."""
    return {"measure": measure, **settings, "reference": data_fingerprint({"reference": reference}),
            **{f"{role}_model": None if m is None else m.fingerprint() for role, m in models.items()}}


# ---------------------------------------------------------------- the image flow models
def _warm(p: FMParams, v: FMVariant) -> bool:
    """Whether this variant's flow model has a warmth input: LeDiFlow with ``fm.warmth.enabled`` (the baseline's
    N(0, I) has no sigma to warm)."""
    return p.warmth.enabled and v.prior == "learned"


def _flow_generator(ema: nn.Module, cfg, meta: dict[str, Any], prior_model: TrainedModel | None,
                    latent_flow_model: TrainedModel | None, autoencoder_model: TrainedModel, device: torch.device,
                    warmth: float | None = None) -> Generator:
    """The generator of a flow model's EMA weights while it trains (its record ``meta``; bf16 on CUDA); with
    ``warmth``, a warm model sampled at that warmth whatever the solver and NFE."""
    gen = make_generator(TrainedModel("dit", cfg, None, ema, meta), prior_model, latent_flow_model, autoencoder_model,
                         device, precision="bf16")
    return gen if warmth is None else gen.with_warmth(warmth)


GeneratorOf = Callable[[nn.Module, "float | None"], Generator]  # (EMA weights, a fixed warmth or None) -> generator


def _flow_monitor(p: FMParams, v: FMVariant, run: RunParams, generator_of: GeneratorOf, warm: bool,
                  parts: dict[str, TrainedModel | None], quality_embedder: TrainedModel,
                  validation_images: dict[str, Any]) -> tuple[EvaluateFn | None, dict[str, Any] | None]:
    """FD at ``variant.monitor_nfe`` on the judge's features and what it measures (the trainer's
    ``evaluate_key``: its settings, the fingerprints of the judge and of the generator's other ``parts``, its
    reference rows), or Nones when ``fm.train.eval_every`` is 0. A ``warm`` model is watched at each warmth of
    ``fm.warmth.monitor``, and the monitor follows the best of them."""
    if not p.train.eval_every:
        return None, None
    device = resolve_device(run.device)
    warmths = p.warmth.monitor if warm else [None]

    def generators_for(ema: nn.Module) -> list[Generator]:
        return [generator_of(ema, w) for w in warmths]

    rows = monitor_rows(validation_images, "monitor", p.monitor.n_reference, run, "the flow model's monitor")["images"]
    seed = derive_seed(run.seed, "monitor/sampling")  # the same for both variants: their monitors are paired
    key = _monitor_key("fd of the flow's images", {
        "nfe": v.monitor_nfe, **asdict(p.monitor), "seed": seed, "warmths": warmths},
        {"judge": quality_embedder, **parts}, rows)
    return flow_quality_monitor(generators_for, build_embedder(quality_embedder, device), as_float(rows),
                                p.monitor.n_samples, v.monitor_nfe, p.monitor.solver, p.monitor.batch_size,
                                seed=seed), key


def _warmth_choice(ema: nn.Module, p: FMParams, run: RunParams, generator_of: GeneratorOf,
                   quality_embedder: TrainedModel, validation_images: dict[str, Any]) -> dict[str, Any]:
    """The record's warmth per solver and NFE (``fm.warmth``), chosen on the validation split's selection block
    (disjoint from the monitor's block by construction; the test split is never read); ``warmth_fd``: every FD
    tried."""
    device = resolve_device(run.device)
    reference = as_float(monitor_rows(validation_images, "selection", p.monitor.n_reference, run,
                                      "fm.warmth's choice")["images"])

    def sampler_with(w: float) -> Generator:
        return generator_of(ema, w)

    w = p.warmth
    choice = choose_warmth(sampler_with, build_embedder(quality_embedder, device), reference, w.grid, w.nfe,
                           p.monitor.n_samples, w.solvers, p.monitor.batch_size,
                           seed=derive_seed(run.seed, "selection/sampling"))
    for solver, by_nfe in choice.fd.items():
        for nfe, row in by_nfe.items():
            log.info("warmth for %s at NFE %d: %s -> w = %g", solver, nfe,
                     "  ".join(f"w={k:g}: FD {v:.3f}" for k, v in row.items()), choice.by_solver[solver][nfe])
    return {"warmth_by_solver": {s: [[nfe, w] for nfe, w in table.items()] for s, table in choice.by_solver.items()},
            "warmth_fd": {s: {str(nfe): {f"{k:g}": v for k, v in row.items()} for nfe, row in by_nfe.items()}
                          for s, by_nfe in choice.fd.items()}}


def train_flow(train_input: dict[str, Any], prior_model: TrainedModel | None, prior_codes: dict[str, Any] | None,
               latent_flow_model: TrainedModel | None, autoencoder_model: TrainedModel, quality_embedder: TrainedModel,
               validation_images: dict[str, Any], p: FMParams, v: FMVariant,
               run: RunParams) -> tuple[TrainedModel, TrainResult]:
    """The image flow model from the learned prior (LeDiFlow) or from N(0, I) (baseline): same backbone,
    schedule and budget for both variants; only x0's distribution differs (the baseline reads nothing of the
    prior: pass None). With ``fm.train.eval_every`` the quality is measured during training (and may stop it
    at its plateau)."""
    if v.prior == "learned" and (prior_model is None or prior_codes is None or latent_flow_model is None):
        raise ValueError(f"{v.name}: training from the learned prior needs the prior model, its codes and the "
                         "latent sampler")
    p = v.own_settings(p)  # the variant's own time sampler, learning rate and EMA, where it selected them
    images = train_input["images"]
    channels = int(images.shape[1])
    prior_channels = p.prior_channels and v.prior == "learned"  # the baseline has no prior to look at
    warmth = _warm(p, v)
    cfg = replace(p.model, in_channels=3 * channels if prior_channels else channels, resolution=int(images.shape[-1]),
                  out_channels=channels if prior_channels else p.model.out_channels, warmth_input=warmth)
    train = with_run(p.train, run, "flow")  # the same seed for both variants: same init, same batches
    # While training, a warm model is monitored (and stopped) at the best of fm.warmth.monitor's warmths; its
    # record's warmth until the choice after training: w = 0, the learned prior itself.
    record = FlowRecord(v.prior, v.name, p.time_sampler, p.prior_noise_scale, prior_channels,
                        {"euler": [[1, 0.0]]} if warmth else {}, run.space)
    meta = asdict(record)
    data = {"images": images}
    if v.prior == "learned":
        data["mu_z"], data["logvar_z"] = prior_codes["mu_z"], prior_codes["logvar_z"]
    source = make_source(record, (channels, int(images.shape[-1]), int(images.shape[-1])), resolve_device(run.device),
                         prior_model, latent_flow_model)
    loss = fm_objective(source, p.time_sampler, warmth)
    learned = v.prior == "learned"
    parts = {"prior": prior_model if learned else None, "latent_sampler": latent_flow_model if learned else None,
             "autoencoder": autoencoder_model}

    def generator_of(ema: nn.Module, fixed_warmth: float | None = None) -> Generator:
        return _flow_generator(ema, cfg, meta, parts["prior"], parts["latent_sampler"], autoencoder_model,
                               resolve_device(run.device), fixed_warmth)

    monitor, monitor_key = _flow_monitor(p, v, run, generator_of, warmth, parts, quality_embedder, validation_images)
    result = run_training(v.name, lambda: DiT(cfg), loss, data, train, run, {**cfg.to_dict(), **meta}, monitor,
                          monitor_key)
    if warmth:
        meta |= _warmth_choice(result.ema, p, run, generator_of, quality_embedder, validation_images)
    meta = meta | {"stop_reason": result.stop_reason, "steps": result.steps}
    return TrainedModel("dit", cfg, result.model, result.ema, meta), result


def flow_training_status(quality: list[float], steps: int, p: FMParams, v: FMVariant,
                         eval_steps: list[int] | None = None) -> dict[str, Any]:
    """Where a flow model stopped and why, from its quality during training (the trainer's plateau rule
    on the same values): ``stop_reason`` ``plateau`` (converged for this budget) or ``step_cap``; with the
    evaluations' steps, ``last_quarter``: the linear trend of the quality over the last quarter of training
    (:func:`~ledi_kedro.core.metrics.trend.tail_trend`; ``flat``: no trend beyond the noise)."""
    out: dict[str, Any] = {"prior": v.prior, "steps": steps, "step_cap": p.train.steps}
    c = p.convergence
    trend = tail_trend(eval_steps, quality, c.tail_fraction, c.confidence) if eval_steps and quality else None
    if trend is not None:
        out["last_quarter"] = {"text": trend.text(), "relative_change": round(trend.relative_change, 5),
                               "interval": [round(trend.interval.low, 5), round(trend.interval.high, 5)],
                               "flat": trend.flat, "evaluations": trend.n_points}
    if quality:
        t = p.train
        at_plateau = plateau_reached(quality, t.plateau_patience, t.plateau_min_rel_improvement, t.plateau_window)
        at = f", the best of warmths {', '.join(f'{w:g}' for w in p.warmth.monitor)}" if _warm(p, v) else ""
        out |= {"monitor": f"fd at NFE {v.monitor_nfe} ({p.monitor.solver}){at}, {p.monitor.n_samples} samples",
                "final_quality": quality[-1], "best_quality": min(quality), "evaluations": len(quality),
                "plateau_reached": at_plateau, "stop_reason": "plateau" if at_plateau else "step_cap"}
    return out

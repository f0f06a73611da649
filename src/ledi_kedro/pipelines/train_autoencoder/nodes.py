"""Autoencoder training and latent caching (latent space only; pixel space passes images through)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import polars as pl

from ledi_kedro.core.artifacts import TrainedModel, load_autoencoder
from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.encoding import encode_latents, fit_latent_scale
from ledi_kedro.core.metrics.model_quality import reconstruction_psnr
from ledi_kedro.core.models import KLAutoencoder
from ledi_kedro.core.objectives import autoencoder_loss
from ledi_kedro.core.subsets import seeded_rows
from ledi_kedro.params import parse, with_run
from ledi_kedro.training import empty_history, history_frame, plot_loss_history, run_training

log = logging.getLogger(__name__)


def train_autoencoder(train_images: dict[str, Any], autoencoder: dict, run: dict) -> tuple[TrainedModel, pl.DataFrame]:
    """Train the KL autoencoder, or describe the pretrained one; pixel space gets an identity record."""
    run_p, ae = parse("run", run), parse("autoencoder", autoencoder)
    images = train_images["images"]
    channels = int(images.shape[1])
    if run_p.space == "pixel" or ae.kind == "none":
        log.info("run.space=%s: no autoencoder, the model input is the image tensors themselves", run_p.space)
        return TrainedModel("identity", {}, None, None, {"space": "pixel"}), empty_history()
    device = resolve_device(run_p.device)
    if ae.kind == "pretrained":
        from ledi_kedro.core.models.pretrained import DiffusersAutoencoder

        module = DiffusersAutoencoder(ae.pretrained_path, channels).to(device)
        if module.downsampling != ae.downsampling() or module.latent_channels != 4:
            raise ValueError(
                f"autoencoder.pretrained_path {ae.pretrained_path}: {module.latent_channels} latent channels and "
                f"downsampling {module.downsampling}; the project expects 4 and {ae.downsampling()} (SD-style VAEs)")
        scale = fit_latent_scale(module, images, device, seed=run_p.seed)
        config = {"path": str(ae.pretrained_path), "image_channels": channels, "scale": scale}
        return TrainedModel("diffusers_autoencoder", config, None, None, {"scale": scale}), empty_history()
    cfg = replace(ae.model, in_channels=channels)
    train = with_run(ae.train, run_p, offset=1)
    result = run_training("autoencoder", lambda: KLAutoencoder(cfg), autoencoder_loss(ae.kl_weight),
                          {"images": images}, train, run_p, cfg.to_dict())
    scale = fit_latent_scale(result.ema, images, result.ema.scale.device, seed=run_p.seed)
    for module in (result.model, result.ema):
        module.scale.fill_(scale)
    return TrainedModel("autoencoder", cfg, result.model, result.ema, {"scale": scale}), history_frame(result)


def _subset(split: dict[str, Any], limit: int | None, seed: int) -> dict[str, Any]:
    """A seeded random subset of ``limit`` rows (kept in their original order)."""
    n = int(split["images"].shape[0])
    if limit is None or limit >= n:
        return split
    log.info("run.max_train_images=%d: training on a seeded subset of %d of %d images", limit, limit, n)
    return seeded_rows(split, limit, seed)


def cache_latents(autoencoder_model: TrainedModel, train_images: dict[str, Any], test_images: dict[str, Any],
                  run: dict) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Encode every split once (the "VAE latent caching" step); pixel space passes the images through."""
    run_p = parse("run", run)
    device = resolve_device(run_p.device)
    module = load_autoencoder(autoencoder_model, device)
    train_images = _subset(train_images, run_p.max_train_images, run_p.seed)
    if module is None:
        out = [dict(split, __metadata__={**split.get("__metadata__", {}), "space": "pixel"})
               for split in (train_images, test_images)]
        return out[0], out[1], {"space": "pixel", "n_train": int(train_images["images"].shape[0])}
    cached = []
    for split in (train_images, test_images):
        latents = encode_latents(module, split["images"], device)
        cached.append({"images": latents, "labels": split["labels"],
                       "__metadata__": {**split.get("__metadata__", {}), "space": "latent"}})
    psnr = reconstruction_psnr(module, test_images["images"], device)
    lat = cached[0]["images"]
    log.info("Cached latents %s (std %.3f); test reconstruction PSNR %.2f dB", tuple(lat.shape), float(lat.std()), psnr)
    metrics = {"space": "latent", "test_psnr_db": round(psnr, 3), "latent_shape": list(lat.shape[1:]),
               "latent_std": round(float(lat.std()), 4), "scale": float(module.scale), "n_train": int(lat.shape[0])}
    return cached[0], cached[1], metrics


def plot_autoencoder_loss(history: pl.DataFrame):
    return plot_loss_history(history, "autoencoder")

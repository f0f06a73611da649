"""Loss functions and helpers for each trained part (plain PyTorch).

Every ``*_loss`` returns a closure with the Trainer's signature ``(model, batch, generator)``;
``batch["images"]`` holds images in [-1, 1] (pixel space) or scaled latents (latent space).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .flow import TimeSamplerName, fm_loss, sample_time
from .losses import PriorLossName, kl_standard_normal, prior_reconstruction_loss
from .models import KLAutoencoder, PriorModel
from .subsets import seeded_indices


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-1, 1]; float tensors (latents) pass through."""
    return images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()


def _randn_like(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


def autoencoder_loss(kl_weight: float) -> Callable:
    def loss(model: nn.Module, batch: dict[str, torch.Tensor], g: torch.Generator):
        x = batch["images"]
        recon, mean, logvar = model(x, generator=g)
        mse = (recon.float() - x).pow(2).mean()
        kl = kl_standard_normal(mean.float(), logvar.float())
        return mse + kl_weight * kl, {"mse": mse, "kl": kl}

    return loss


def prior_loss(kind: PriorLossName, beta_kl: float, beta: float = 0.5) -> Callable:
    """Reconstruction loss of P_L(x | z) (VGL by default) + beta_kl * KL(q(z | y) || N(0, I))."""

    def loss(model: nn.Module, batch: dict[str, torch.Tensor], g: torch.Generator):
        y = batch["images"]
        out = model(y, generator=g)
        rec = prior_reconstruction_loss(kind, y, out.mean.float(), out.logvar.float(), beta)
        kl = kl_standard_normal(out.mu_z.float(), out.logvar_z.float())
        return rec + beta_kl * kl, {"recon": rec, "kl": kl}

    return loss


def latent_flow_loss(time_sampler: TimeSamplerName = "uniform") -> Callable:
    """FM from w ~ N(0, I) to codes z ~ q(z | y) (drawn each step from cached encoder moments)."""

    def loss(model: nn.Module, batch: dict[str, torch.Tensor], g: torch.Generator):
        mu, logvar = batch["mu_z"], batch["logvar_z"]
        z = mu + torch.exp(0.5 * logvar) * _randn_like(mu, g)
        w = _randn_like(mu, g)
        return fm_loss(model, w, z, sample_time(mu.shape[0], time_sampler, generator=g, device=mu.device))

    return loss


def fm_learned_prior_loss(prior: PriorModel, noise_scale: float, time_sampler: TimeSamplerName) -> Callable:
    """LeDiFlow: x0 = mu(z) + s exp(lv(z)/2) eps with z ~ q(z | y) of the same image y, then FM x0 -> y."""
    prior.eval().requires_grad_(False)

    def loss(model: nn.Module, batch: dict[str, torch.Tensor], g: torch.Generator):
        y, mu_z, logvar_z = batch["images"], batch["mu_z"], batch["logvar_z"]
        with torch.no_grad():
            z = mu_z + torch.exp(0.5 * logvar_z) * _randn_like(mu_z, g)
            x0 = prior.sample_x0(z, noise_scale, generator=g).float()
        return fm_loss(model, x0, y, sample_time(y.shape[0], time_sampler, generator=g, device=y.device))

    return loss


def fm_gaussian_prior_loss(time_sampler: TimeSamplerName) -> Callable:
    """Baseline: x0 ~ N(0, I), then FM x0 -> y."""

    def loss(model: nn.Module, batch: dict[str, torch.Tensor], g: torch.Generator):
        y = batch["images"]
        return fm_loss(model, _randn_like(y, g), y, sample_time(y.shape[0], time_sampler, generator=g, device=y.device))

    return loss


def augment_images(x: torch.Tensor, g: torch.Generator, hflip: bool = True, crop_padding: int = 0) -> torch.Tensor:
    """Per-image random horizontal flips and random crops of the image padded by ``crop_padding``
    (edge-replicated) pixels: shifts of up to +-crop_padding, the classic small-image augmentation."""
    n, _, h, w = x.shape
    if hflip:
        flip = torch.rand(n, generator=g, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if crop_padding > 0:
        p = crop_padding
        padded = torch.nn.functional.pad(x, (p, p, p, p), mode="replicate")
        dy, dx = (torch.randint(0, 2 * p + 1, (2, n), generator=g, device=x.device))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(-1, x.shape[1], -1, w + 2 * p)
        padded = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(-1, x.shape[1], h, -1)
        x = padded.gather(3, cols)
    return x


def classifier_loss(hflip: bool = True, crop_padding: int = 0) -> Callable:
    """Cross-entropy of the domain classifier on augmented images; reports the batch accuracy."""

    def loss(model: nn.Module, batch: dict[str, torch.Tensor], g: torch.Generator):
        x = augment_images(batch["images"], g, hflip, crop_padding)
        logits = model(x).float()
        labels = batch["labels"].long()
        return torch.nn.functional.cross_entropy(logits, labels), {"accuracy": (logits.argmax(1) == labels).float().mean()}

    return loss


@torch.no_grad()
def classifier_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        device: torch.device | str = "cpu", batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on uint8 or float images."""
    model = model.eval().to(device)
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(as_float(images[start: start + batch_size].to(device)))
        correct += int((logits.argmax(1).cpu() == labels[start: start + batch_size].long()).sum())
    return correct / max(int(images.shape[0]), 1)


def _batches(x: torch.Tensor, size: int):
    for i in range(0, x.shape[0], size):
        yield x[i: i + size]


@torch.no_grad()
def encode_moments(prior: PriorModel, images: torch.Tensor, device: torch.device | str = "cpu",
                   batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder moments (mu_z, logvar_z) of every image, on the CPU."""
    prior = prior.eval().to(device)
    mus, lvs = [], []
    for chunk in _batches(images, batch_size):
        mu, lv = prior.encode(as_float(chunk.to(device)))
        mus.append(mu.float().cpu())
        lvs.append(lv.float().cpu())
    return torch.cat(mus), torch.cat(lvs)


@torch.no_grad()
def prior_metrics(prior: PriorModel, images: torch.Tensor, kind: PriorLossName = "vgl", beta: float = 0.5,
                  device: torch.device | str = "cpu", batch_size: int = 128, seed: int = 0) -> dict[str, float]:
    """Held-out figures of the auxiliary model: its loss, KL per z dimension, MSE of the prior mean
    mu(z) against the image (z ~ q(z|y)), and the mean predicted per-pixel std."""
    prior = prior.eval().to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    totals = {"loss": 0.0, "kl_per_dim": 0.0, "recon_mse_of_mean": 0.0, "mean_predicted_std": 0.0}
    n = 0
    for chunk in _batches(images, batch_size):
        y = as_float(chunk.to(device))
        out = prior(y, generator=g)
        b = y.shape[0]
        totals["loss"] += float(prior_reconstruction_loss(kind, y, out.mean, out.logvar, beta)) * b
        kl = 0.5 * (out.mu_z.pow(2) + torch.exp(out.logvar_z) - 1 - out.logvar_z).mean(dim=1)
        totals["kl_per_dim"] += float(kl.sum())
        totals["recon_mse_of_mean"] += float((out.mean - y).pow(2).mean()) * b
        totals["mean_predicted_std"] += float(torch.exp(0.5 * out.logvar).mean()) * b
        n += b
    return {k: v / n for k, v in totals.items()} | {"n_images": n}


@torch.no_grad()
def fit_latent_scale(autoencoder: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                     n: int = 2048, seed: int = 0) -> float:
    """1 / std of the posterior means on a seeded sample of up to ``n`` images, so cached latents have
    unit variance."""
    sample = images[seeded_indices(images.shape[0], n, seed)]
    means = [autoencoder.encode(as_float(c.to(device)))[0].float() for c in _batches(sample, 256)]
    return 1.0 / float(torch.cat(means).std().clamp_min(1e-6))


@torch.no_grad()
def encode_latents(autoencoder: KLAutoencoder, images: torch.Tensor, device: torch.device | str = "cpu",
                   batch_size: int = 256) -> torch.Tensor:
    autoencoder = autoencoder.eval().to(device)
    return torch.cat([autoencoder.encode_scaled(as_float(c.to(device))).float().cpu()
                      for c in _batches(images, batch_size)])


@torch.no_grad()
def reconstruction_psnr(autoencoder: KLAutoencoder, images: torch.Tensor, device: torch.device | str = "cpu",
                        batch_size: int = 256) -> float:
    """PSNR (dB) of decode(encode(x)) for images in [-1, 1] (peak-to-peak range 2)."""
    autoencoder = autoencoder.eval().to(device)
    se, count = 0.0, 0
    for chunk in _batches(images, batch_size):
        x = as_float(chunk.to(device))
        recon = autoencoder.decode_scaled(autoencoder.encode_scaled(x)).clamp(-1, 1)
        se += float((recon - x).pow(2).sum())
        count += x.numel()
    mse = se / max(count, 1)
    return 10 * math.log10(4.0 / mse) if mse > 0 else float("inf")

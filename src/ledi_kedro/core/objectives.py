"""Training objectives: one ``*_loss`` factory per trained part (plain PyTorch).

Every ``*_loss`` returns a closure with the Trainer's signature ``(model, batch, generator)``;
``batch["images"]`` holds images in [-1, 1] (pixel space) or scaled latents (latent space).
Randomness comes from ``generator`` only, so that a resumed run repeats its draws.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .flow import TimeSamplerName, fm_loss, sample_time
from .generation import Source, conditioned
from .losses import PriorLossName, kl_standard_normal, prior_reconstruction_loss
from .models import reparameterize


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
        z = reparameterize(mu, logvar, _randn_like(mu, g))
        w = _randn_like(mu, g)
        return fm_loss(model, w, z, sample_time(mu.shape[0], time_sampler, generator=g, device=mu.device))

    return loss


def fm_objective(source: Source, time_sampler: TimeSamplerName, warmth: bool = False) -> Callable:
    """Flow matching from any source's x0 to the data: x0 (and its condition) from ``source.for_data(batch)``
    (N(0, I) for the baseline; for LeDiFlow x0 = mu(z) + s exp(lv(z)/2) eps with z ~ q(z | y) of the same image y,
    and [mu(z), lv(z)] as extra input channels when the source has ``prior_channels``), then FM x0 -> y. With
    ``warmth`` each image draws w ~ U(0, 1) that the source blends into x0's sigma and the model is told (its
    ``warmth`` input), so one model serves every warmth chosen at sampling time."""

    def loss(model: nn.Module, batch: dict[str, torch.Tensor], g: torch.Generator):
        y = batch["images"]
        w = torch.rand(y.shape[0], generator=g, device=y.device) if warmth else None
        draw = source.for_data(batch, g, warmth=w)
        t = sample_time(y.shape[0], time_sampler, generator=g, device=y.device)
        return fm_loss(conditioned(model, draw.condition, w), draw.x0, y, t)

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

"""Encoding data once with a trained network: the prior encoder's moments of every image, and an
autoencoder's (scaled) latents of every image with the scale fitted on a seeded sample."""

from __future__ import annotations

import torch
from torch import nn

from .data.tensors import as_float, batches
from .models import KLAutoencoder, PriorModel
from .subsets import seeded_indices


@torch.no_grad()
def encode_moments(prior: PriorModel, images: torch.Tensor, device: torch.device | str = "cpu",
                   batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder moments (mu_z, logvar_z) of every image, on the CPU."""
    prior = prior.eval().to(device)
    mus, lvs = [], []
    for chunk in batches(images, batch_size):
        mu, lv = prior.encode(as_float(chunk.to(device)))
        mus.append(mu.float().cpu())
        lvs.append(lv.float().cpu())
    return torch.cat(mus), torch.cat(lvs)


@torch.no_grad()
def fit_latent_scale(autoencoder: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                     n: int = 2048, seed: int = 0) -> float:
    """1 / std of the posterior means on a seeded sample of up to ``n`` images, so cached latents have
    unit variance."""
    sample = images[seeded_indices(images.shape[0], n, seed)]
    means = [autoencoder.encode(as_float(c.to(device)))[0].float() for c in batches(sample, 256)]
    return 1.0 / float(torch.cat(means).std().clamp_min(1e-6))


@torch.no_grad()
def encode_latents(autoencoder: KLAutoencoder, images: torch.Tensor, device: torch.device | str = "cpu",
                   batch_size: int = 256) -> torch.Tensor:
    autoencoder = autoencoder.eval().to(device)
    return torch.cat([autoencoder.encode_scaled(as_float(c.to(device))).float().cpu()
                      for c in batches(images, batch_size)])

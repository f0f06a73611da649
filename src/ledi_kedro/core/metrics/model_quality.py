"""Held-out figures of single trained parts: the prior's loss and KL, an autoencoder's reconstruction
PSNR, a classifier's accuracy, and the straightness of a flow's sampled paths."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..data.tensors import as_float, batches
from ..losses import PriorLossName, kl_standard_normal, prior_reconstruction_loss
from ..models import KLAutoencoder, PriorModel
from ..generation import Generator, velocity_field
from ..solvers import integrate


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


@torch.no_grad()
def prior_metrics(prior: PriorModel, images: torch.Tensor, kind: PriorLossName = "vgl", beta: float = 0.5,
                  device: torch.device | str = "cpu", batch_size: int = 128, seed: int = 0) -> dict[str, float]:
    """Held-out figures of the auxiliary model: its loss, KL per z dimension, MSE of the prior mean
    mu(z) against the image (z ~ q(z|y)), and the mean predicted per-pixel std."""
    prior = prior.eval().to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    totals = {"loss": 0.0, "kl_per_dim": 0.0, "recon_mse_of_mean": 0.0, "mean_predicted_std": 0.0}
    n = 0
    for chunk in batches(images, batch_size):
        y = as_float(chunk.to(device))
        out = prior(y, generator=g)
        b = y.shape[0]
        totals["loss"] += float(prior_reconstruction_loss(kind, y, out.mean, out.logvar, beta)) * b
        kl = kl_standard_normal(out.mu_z, out.logvar_z, dim=1)
        totals["kl_per_dim"] += float(kl.sum())
        totals["recon_mse_of_mean"] += float((out.mean - y).pow(2).mean()) * b
        totals["mean_predicted_std"] += float(torch.exp(0.5 * out.logvar).mean()) * b
        n += b
    return {k: v / n for k, v in totals.items()} | {"n_images": n}


@torch.no_grad()
def reconstruction_psnr(autoencoder: KLAutoencoder, images: torch.Tensor, device: torch.device | str = "cpu",
                        batch_size: int = 256) -> float:
    """PSNR (dB) of decode(encode(x)) for images in [-1, 1] (peak-to-peak range 2)."""
    autoencoder = autoencoder.eval().to(device)
    se, count = 0.0, 0
    for chunk in batches(images, batch_size):
        x = as_float(chunk.to(device))
        recon = autoencoder.decode_scaled(autoencoder.encode_scaled(x)).clamp(-1, 1)
        se += float((recon - x).pow(2).sum())
        count += x.numel()
    mse = se / max(count, 1)
    return 10 * math.log10(4.0 / mse) if mse > 0 else float("inf")


@torch.no_grad()
def straightness(generator: Generator, n: int, steps: int = 32, seed: int = 0) -> float:
    """Mean ||v(x_t, t) - (x1 - x0)||^2 along sampled Euler trajectories (0 for a straight flow)."""
    draw = generator.draw(n, solver="euler", steps=steps, seed=seed)
    velocity = velocity_field(generator.flow, draw, generator.warmth_for("euler", steps=steps), generator.precision)
    traj = integrate(velocity, draw.x0, solver="euler", steps=steps, return_trajectory=True).trajectory
    chord = traj[-1] - traj[0]
    dev = [(velocity(traj[i], torch.tensor(i / steps, device=draw.x0.device)) - chord).pow(2).mean()
           for i in range(steps)]
    return float(torch.stack(dev).mean())

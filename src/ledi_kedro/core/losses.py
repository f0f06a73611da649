"""Losses of the auxiliary prior model.

With residual r = y - mu and per-pixel log-variance lv (all reductions are means):

* ``nll``       Gaussian negative log-likelihood, up to constants: lv + r^2 exp(-lv).
                Its mean gradient is scaled by exp(-lv), so pixels with large predicted variance
                starve the mean of gradient.
* ``beta_nll``  Seitzer et al. (2022): sg(exp(lv))^beta * (lv + r^2 exp(-lv)).
* ``vgl``       Variance Guided Loss, decoupled form (default):
                r^2 + (lv + sg(r^2) exp(-lv)). The mean gets the plain MSE gradient; the variance
                term's fixed point is exp(lv) = E[r^2]. (The paper's exact formula is not
                available; this form serves its stated purpose.)
* ``kl_standard_normal``  KL(N(mu, diag exp(logvar)) || N(0, I)), mean over elements.
"""

from __future__ import annotations

from typing import Literal

import torch

PriorLossName = Literal["vgl", "nll", "beta_nll"]


def gaussian_nll(y: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return (logvar + (y - mean).pow(2) * torch.exp(-logvar)).mean()


def beta_nll(y: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    weight = torch.exp(logvar.detach() * beta)
    return (weight * (logvar + (y - mean).pow(2) * torch.exp(-logvar))).mean()


def variance_guided_loss(y: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    sq = (y - mean).pow(2)
    return sq.mean() + (logvar + sq.detach() * torch.exp(-logvar)).mean()


def prior_reconstruction_loss(kind: PriorLossName, y: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                              beta: float = 0.5) -> torch.Tensor:
    if kind == "vgl":
        return variance_guided_loss(y, mean, logvar)
    if kind == "nll":
        return gaussian_nll(y, mean, logvar)
    if kind == "beta_nll":
        return beta_nll(y, mean, logvar, beta)
    raise ValueError(f"unknown prior loss {kind!r}; use 'vgl', 'nll' or 'beta_nll'")


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over all elements (``dim=None``) or over ``dim`` (e.g. 1: per row, i.e. per z dimension)."""
    kl = 0.5 * (mu.pow(2) + torch.exp(logvar) - 1.0 - logvar)
    return kl.mean() if dim is None else kl.mean(dim=dim)

"""Distances between sets of embeddings (rows are samples), computed in float64.

* ``frechet_distance``  ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)  (FID's formula).
* ``kid``               unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, averaged
                        over random subsets (Binkowski et al., 2018).
* ``mmd_rbf``           MMD^2 with a Gaussian RBF kernel exp(-||x - y||^2 / (2 sigma^2)), the biased
                        (V-statistic) estimator with all pairs, times ``scale``. With sigma=10 and
                        scale=1000 on CLIP embeddings this is CMMD (Jayasumana et al., 2024).
"""

from __future__ import annotations

import torch


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64)


def sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    """Symmetric square roots of (..., d, d) positive semi-definite matrices (negative eigenvalues -> 0)."""
    vals, vecs = torch.linalg.eigh((m + m.transpose(-1, -2)) / 2)
    return (vecs * vals.clamp_min(0).sqrt().unsqueeze(-2)) @ vecs.transpose(-1, -2)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to ``a`` (n, d) and ``b`` (m, d) (clipped at 0)."""
    a, b = _f64(a), _f64(b)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples per set")
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    return max(0.0, gaussian_frechet_distance(a.mean(0), cov_a, b.mean(0), cov_b))


def gaussian_frechet_distance(mu_a, cov_a, mu_b, cov_b) -> float:
    """FID's formula for two Gaussians given by their moments."""
    mu_a, cov_a, mu_b, cov_b = (_f64(torch.as_tensor(v)) for v in (mu_a, cov_a, mu_b, cov_b))
    root_a = sqrtm_psd(cov_a)
    cross = sqrtm_psd(root_a @ cov_b @ root_a)
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * torch.trace(cross))


def sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2 * x @ y.T).clamp_min(0)


def mmd_rbf(a: torch.Tensor, b: torch.Tensor, sigma: float, scale: float = 1000.0) -> float:
    """Biased MMD^2 with a Gaussian RBF kernel of bandwidth ``sigma``, times ``scale``."""
    a, b = _f64(a), _f64(b)
    gamma = 1.0 / (2 * sigma**2)
    k_aa = torch.exp(-gamma * sq_dists(a, a)).mean()
    k_bb = torch.exp(-gamma * sq_dists(b, b)).mean()
    k_ab = torch.exp(-gamma * sq_dists(a, b)).mean()
    return float(scale * (k_aa + k_bb - 2 * k_ab))


def median_heuristic_sigma(x: torch.Tensor, max_n: int = 2000) -> float:
    """Median pairwise distance of (up to ``max_n``) rows: a bandwidth fixed once from real data."""
    x = _f64(x[:max_n])
    d = sq_dists(x, x).sqrt()
    return float(d[torch.triu_indices(len(x), len(x), 1).unbind()].median())


def kid(a: torch.Tensor, b: torch.Tensor, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased polynomial-kernel MMD^2, mean over random subsets."""
    a, b = _f64(a), _f64(b)
    d = a.shape[1]
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(subsets):
        x = a[torch.randperm(a.shape[0], generator=g)[:m]]
        y = b[torch.randperm(b.shape[0], generator=g)[:m]]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        off = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        total += float(off - 2 * k_xy.mean())
    return total / subsets

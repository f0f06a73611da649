"""Error bars for quality metrics by half-sampling, paired across every point measured against one reference.

Replicate ``b`` keeps a random half of the reference features, one half that every point shares,
and a random half of each point's generated features, the same rows for every point of the same
size. Sharing the reference half makes the replicates of different points *paired*: a difference
between two points, or a speedup read off two curves, is computed within each replicate, so the
noise of the reference set does not inflate it. Sharing the generated rows does the same for points
drawn from the same seeds (the evaluation draws every point from the same seeds, batch by batch):
row ``i`` of two such points comes from the same noise, so keeping or dropping it together keeps
that common noise out of their difference. For points whose rows are unrelated this changes nothing
(each point's replicates still keep a uniformly random half of its rows).

Why halves and not the classic bootstrap (rows drawn with replacement): repeated rows look like
perfectly matching pairs to kernel metrics and shrink the effective sample size of FD, whose
estimator is biased by about ``d / n``; the replicates then sit far above the point value. A half
drawn without replacement has no repeats, and for a statistic whose variance scales like ``1 / n``
the spread of half-sample values around their mean equals the variance of the full-sample value
(the delete-half jackknife: the finite-population factor ``1 - 1/2`` cancels the doubled ``1 / (n/2)``).
Each point's replicates are then *recentred* on its full-sample value, ``q + (r_b - mean(r))``,
which removes the half-sample bias and keeps the pairing. Intervals are percentiles of the
recentred replicates, clipped at 0 for FD and MMD.

Halves are 0/1 row weights ``w`` and each replicate is a weighted statistic (nothing is copied):

* FD:  mean ``w @ X / k``, covariance ``(X - mu)^T diag(w) (X - mu) / (k - 1)`` (k = rows kept), FID's formula.
* MMD (RBF, biased V-statistic): ``w_a^T K_aa w_a / k^2 + w_b^T K_bb w_b / l^2 - 2 w_a^T K_ab w_b / (k l)``.
* KID (cubic polynomial kernel, unbiased): the same with the diagonal left out, ``(w^T K w - w . diag K) / (k (k - 1))``.

Cost: FD needs ``n_resamples`` eigen-decompositions of ``min(k, d)``-square matrices per point
(d: feature size); the reference's statistics are computed once per replicate for all points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from .distances import sq_dists, sqrtm_psd

BootstrapMetric = Literal["fd", "kid", "mmd"]
NONNEGATIVE = ("fd", "mmd")


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


MIN_ROWS = 4  # the fewest rows per set that half-sampling can give an interval for


def half_sample_weights(n: int, n_resamples: int, generator: torch.Generator) -> torch.Tensor:
    """(n_resamples, n) float64 0/1 weights, each row keeping a random ``n // 2`` of the ``n`` rows."""
    keys = torch.rand(n_resamples, n, generator=generator)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    return (ranks < n // 2).to(torch.float64)


def _weighted_moments(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means (r, d) and covariances (r, d, d) of ``x`` (n, d) under 0/1 weights ``w`` (r, n)."""
    k = w.sum(1)
    mu = w @ x / k[:, None]
    second = torch.einsum("rn,nd,ne->rde", w, x, x)
    cov = (second - k[:, None, None] * mu[:, :, None] * mu[:, None, :]) / (k[:, None, None] - 1)
    return mu, cov


class QualityBootstrap:
    """Paired half-sample replicates of one quality metric for several feature sets against one reference.

    ``replicates(reference, sets, points)`` returns the recentred (len(sets), n_resamples) replicates;
    ``interval`` turns them into a :class:`Interval`.
    """

    def __init__(self, metric: BootstrapMetric, n_resamples: int, confidence: float, *,
                 seed: int = 0, sigma: float | None = None, scale: float = 1000.0,
                 max_chunk_bytes: int = 256 * 2**20):
        if metric not in ("fd", "kid", "mmd"):
            raise ValueError(f"unknown metric {metric!r}; choose fd, kid or mmd")
        if n_resamples < 2:
            raise ValueError(f"n_resamples must be at least 2, got {n_resamples}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if metric == "mmd" and sigma is None:
            raise ValueError("the mmd bootstrap needs the kernel bandwidth sigma")
        self.metric, self.n_resamples, self.confidence, self.seed = metric, n_resamples, confidence, seed
        self.sigma, self.scale, self.max_chunk_bytes = sigma, scale, max_chunk_bytes

    # ------------------------------------------------------------------ replicates
    def replicates(self, reference: torch.Tensor, sets: Sequence[torch.Tensor],
                   points: Sequence[float]) -> torch.Tensor:
        """Half-sample values of the metric for each set, recentred on its full-sample value ``points[i]``."""
        if len(points) != len(sets):
            raise ValueError(f"{len(sets)} feature sets but {len(points)} point values")
        ref = reference.detach().to(torch.float64)
        gens = [s.detach().to(torch.float64) for s in sets]
        for s in [ref, *gens]:
            if s.shape[0] < MIN_ROWS:
                raise ValueError(f"half-sampling needs at least {MIN_ROWS} rows per set, got {s.shape[0]}")
        w_ref = half_sample_weights(ref.shape[0], self.n_resamples, torch.Generator().manual_seed(self.seed))
        w_gens = [half_sample_weights(g.shape[0], self.n_resamples, torch.Generator().manual_seed(self.seed + 1))
                  for g in gens]  # one seed: the same halves for every set of the same size (rows drawn alike)
        raw = self._fd(ref, gens, w_ref, w_gens) if self.metric == "fd" else self._kernel(ref, gens, w_ref, w_gens)
        return torch.tensor(points, dtype=torch.float64)[:, None] + raw - raw.mean(1, keepdim=True)

    def _fd(self, ref, gens, w_ref, w_gens) -> torch.Tensor:
        d = ref.shape[1]
        chunk = max(1, min(self.n_resamples, self.max_chunk_bytes // (8 * d * d * 4)))
        out = torch.empty(len(gens), self.n_resamples, dtype=torch.float64)
        for start in range(0, self.n_resamples, chunk):
            sl = slice(start, start + chunk)
            mu_r, cov_r = _weighted_moments(ref, w_ref[sl])
            root_r = sqrtm_psd(cov_r)
            tr_r = cov_r.diagonal(dim1=1, dim2=2).sum(-1)
            for p, (g, w) in enumerate(zip(gens, w_gens)):
                wk = w[sl]
                k = int(wk[0].sum())
                mu_g = wk @ g / k
                if k < d:  # root S_g root = Y^T Y has the nonzero eigenvalues of the smaller Y Y^T
                    rows = g[wk.nonzero()[:, 1].view(wk.shape[0], k)]  # (r, k, d): the kept rows
                    cen = (rows - mu_g[:, None, :]) / math.sqrt(k - 1)
                    y = cen @ root_r
                    cross = y @ y.transpose(1, 2)
                    tr_g = cen.pow(2).sum((1, 2))
                else:
                    _, cov_g = _weighted_moments(g, wk)
                    cross = root_r @ cov_g @ root_r
                    tr_g = cov_g.diagonal(dim1=1, dim2=2).sum(-1)
                eig = torch.linalg.eigvalsh((cross + cross.transpose(1, 2)) / 2).clamp_min(0)
                value = (mu_g - mu_r).pow(2).sum(-1) + tr_g + tr_r - 2 * eig.sqrt().sum(-1)
                out[p, sl] = value.clamp_min(0)
        return out

    def _kernel_matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.metric == "mmd":
            return torch.exp(-sq_dists(a, b) / (2 * self.sigma**2))
        return (a @ b.T / a.shape[1] + 1) ** 3

    def _self_term(self, kernel: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        k = w.sum(1)
        quad = ((w @ kernel) * w).sum(-1)
        if self.metric == "mmd":
            return quad / k**2
        return (quad - w @ kernel.diagonal()) / (k * (k - 1))

    def _kernel(self, ref, gens, w_ref, w_gens) -> torch.Tensor:
        ref_term = self._self_term(self._kernel_matrix(ref, ref), w_ref)
        m = w_ref.sum(1)
        out = torch.empty(len(gens), self.n_resamples, dtype=torch.float64)
        for p, (g, w) in enumerate(zip(gens, w_gens)):
            n = w.sum(1)
            cross = ((w @ self._kernel_matrix(g, ref)) * w_ref).sum(-1) / (n * m)
            value = self._self_term(self._kernel_matrix(g, g), w) + ref_term - 2 * cross
            out[p] = value * self.scale if self.metric == "mmd" else value
        return out

    # ------------------------------------------------------------------ intervals
    def interval(self, replicates: torch.Tensor) -> Interval:
        """Percentile interval of (recentred) replicates at ``confidence``, clipped at 0 for FD and MMD."""
        return percentile_interval(replicates, self.confidence, nonnegative=self.metric in NONNEGATIVE)


def percentile_interval(replicates: torch.Tensor | Sequence[float], confidence: float,
                        nonnegative: bool = False) -> Interval:
    """The replicates' (1 - confidence) / 2 and (1 + confidence) / 2 quantiles."""
    reps = torch.as_tensor(replicates, dtype=torch.float64)
    alpha = (1 - confidence) / 2
    low, high = (float(v) for v in torch.quantile(reps, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)))
    if nonnegative:
        low, high = max(0.0, low), max(0.0, high)
    return Interval(low, high)

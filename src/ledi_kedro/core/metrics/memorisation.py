"""Does a generator copy its training set? Nearest-neighbour distances in the judge's feature space.

For every generated image, the distance to its nearest training image; the same for held-out real images
(which no model saw), as the yardstick. A model that reproduces training images has many generated images
far closer to a training image than held-out images ever are: ``close_fraction``, the share of generated
images nearer to the training set than the ``quantile``-quantile of the held-out distances, is about
``quantile`` for a model that does not copy (less for blurrier samples) and approaches 1 for one that does.

The limit is calibrated, not chosen: with the threshold at the ``k``-th smallest of ``n_h`` held-out distances
(``k = ceil(quantile * n_h)``), a model whose samples are as far from the training set as new real images are
(exchangeable with the held-out images) puts each sample below it with probability ``U ~ Beta(k, n_h - k + 1)``,
so its count of close samples out of ``n_s`` is Beta-binomial(``n_s``, ``k``, ``n_h - k + 1``) exactly.
:func:`close_fraction_limit` is that null's upper quantile, Bonferroni-corrected for the number of points tested.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .distances import sq_dists


@torch.no_grad()
def nearest_distances(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Euclidean distance from each row of ``queries`` (n, d) to its nearest row of ``bank`` (m, d), in
    float32 (a ranking, not a sum: float32 is exact enough) and ``chunk`` queries at a time (memory
    ``chunk * m``)."""
    bank = bank.detach().float()
    out = [sq_dists(q.detach().float(), bank).min(dim=1).values.sqrt() for q in queries.split(chunk)]
    return torch.cat(out) if out else torch.empty(0)


@dataclass(frozen=True)
class Memorisation:
    generated_median: float  # median distance of a generated image to its nearest training image
    held_out_median: float  # the same for held-out real images
    close_fraction: float  # share of generated images nearer than the held-out distances' `quantile`-quantile
    quantile: float
    n_generated: int
    n_held_out: int
    n_training: int

    @property
    def ratio(self) -> float:
        """generated / held-out median: below 1, samples sit closer to training images than new real ones do."""
        return self.generated_median / self.held_out_median if self.held_out_median > 0 else float("inf")

    def to_dict(self) -> dict:
        return asdict(self) | {"ratio": self.ratio}


def _order_statistic(n_held_out: int, quantile: float) -> int:
    return max(1, math.ceil(quantile * n_held_out))


def held_out_threshold(held_out_nn: torch.Tensor, quantile: float) -> float:
    """The ``k``-th smallest held-out distance, ``k = ceil(quantile * n)``: the threshold whose null is exact."""
    k = _order_statistic(held_out_nn.numel(), quantile)
    return float(held_out_nn.to(torch.float64).sort().values[k - 1])


def _null_log_pmf(n_generated: int, n_held_out: int, quantile: float) -> list[float]:
    """log P(X = x), x = 0..n_generated, X ~ Beta-binomial(n_generated, k, n_held_out - k + 1): the number of
    generated images below the held-out threshold when they are exchangeable with the held-out images."""
    a = _order_statistic(n_held_out, quantile)
    b = n_held_out - a + 1
    n = n_generated
    log_beta_ab = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return [math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1)
            + math.lgamma(x + a) + math.lgamma(n - x + b) - math.lgamma(n + a + b) - log_beta_ab for x in range(n + 1)]


def close_fraction_p_value(close_fraction: float, n_generated: int, n_held_out: int, quantile: float) -> float:
    """P(a model that copies nothing shows at least this close fraction) at these sample sizes."""
    count = round(close_fraction * n_generated)
    return min(1.0, sum(math.exp(lp) for lp in _null_log_pmf(n_generated, n_held_out, quantile)[count:]))


def close_fraction_limit(n_generated: int, n_held_out: int, quantile: float, alpha: float, n_tests: int) -> float:
    """The smallest close fraction ``c / n_generated`` with P(X > c) <= ``alpha / n_tests`` under the null (a model
    that copies nothing): a point above it is a finding at family-wise false-alarm rate ``alpha`` over ``n_tests``
    points (Bonferroni)."""
    if not 0.0 < alpha < 1.0 or n_tests < 1:
        raise ValueError(f"alpha must be in (0, 1) and n_tests >= 1, got {alpha}, {n_tests}")
    level, tail = alpha / n_tests, 0.0
    pmf = [math.exp(lp) for lp in _null_log_pmf(n_generated, n_held_out, quantile)]
    for c in range(n_generated, -1, -1):  # tail = P(X > c)
        if tail + pmf[c] > level:
            return c / n_generated
        tail += pmf[c]
    return 0.0


def memorisation(
generated_nn: torch.Tensor, held_out_nn: torch.Tensor, n_training: int,
                 quantile: float = 0.05) -> Memorisation:
    """Summary of nearest-training-image distances of generated images against those of held-out images."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if generated_nn.numel() == 0 or held_out_nn.numel() == 0:
        raise ValueError("the memorisation check needs generated and held-out distances")
    threshold = held_out_threshold(held_out_nn, quantile)
    return Memorisation(float(generated_nn.median()), float(held_out_nn.median()),
                        float((generated_nn < threshold).to(torch.float64).mean()), quantile,
                        int(generated_nn.numel()), int(held_out_nn.numel()), n_training)

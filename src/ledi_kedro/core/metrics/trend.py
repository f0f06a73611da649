"""Small-sample statistics for replicated and monitored figures: Student-t quantiles (no SciPy: the core library
runs where only torch and numpy are), t-intervals of a mean across seeds, and the linear trend of a quality
history over the last part of training (is a curve still falling, or flat within its noise?)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .intervals import Interval


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p``-quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class MeanInterval:
    """The mean of ``n`` replicates (e.g. one figure on several training seeds) with its t-interval."""

    mean: float
    interval: Interval
    n: int
    std: float
    confidence: float


def mean_with_t_interval(values: Sequence[float], confidence: float) -> MeanInterval:
    """Mean and two-sided t-interval of independent replicates; the interval holds all their variance (training
    included, when each replicate is a fresh training run). Needs at least two values."""
    xs = [float(v) for v in values]
    if len(xs) < 2:
        raise ValueError(f"a t-interval needs at least 2 replicates, got {len(xs)}")
    n, mean = len(xs), sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return MeanInterval(mean, Interval(mean - half, mean + half), n, std, confidence)


@dataclass(frozen=True)
class Trend:
    """A least-squares line through a quality history's last evaluations: the fitted change over that span
    relative to the fitted value at its start (negative: still improving, lower is better) with its t-interval.
    ``flat``: the interval holds 0, so the span shows no trend beyond the noise."""

    first_step: int
    last_step: int
    n_points: int
    relative_change: float
    interval: Interval
    confidence: float

    @property
    def flat(self) -> bool:
        return self.interval.low <= 0.0 <= self.interval.high

    def text(self) -> str:
        verdict = "flat within the noise" if self.flat else ("still falling" if self.interval.high < 0 else "rising")
        return (f"{100 * self.relative_change:+.1f}% over steps {self.first_step}-{self.last_step} "
                f"({round(100 * self.confidence)}% CI {100 * self.interval.low:+.1f}% to "
                f"{100 * self.interval.high:+.1f}%, {self.n_points} evaluations): {verdict}")


def tail_trend(steps: Sequence[int], values: Sequence[float], fraction: float, confidence: float) -> Trend | None:
    """The :class:`Trend` of the evaluations in the last ``fraction`` of the steps trained (at least three, or
    None when the history is shorter)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    pairs = [(int(s), float(v)) for s, v in zip(steps, values) if math.isfinite(v)]
    if len(pairs) < 3:
        return None
    end = pairs[-1][0]
    tail = [(s, v) for s, v in pairs if s >= end - fraction * end]
    if len(tail) < 3:
        tail = pairs[-3:]
    n = len(tail)
    xs, ys = [s for s, _ in tail], [v for _, v in tail]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, ys)]
    se = math.sqrt(sum(r * r for r in resid) / (n - 2) / sxx)
    span, start = xs[-1] - xs[0], my + slope * (xs[0] - mx)
    scale = abs(start) if start else 1.0
    half = t_quantile(0.5 + confidence / 2, n - 2) * se * span / scale
    change = slope * span / scale
    return Trend(xs[0], xs[-1], n, change, Interval(change - half, change + half), confidence)

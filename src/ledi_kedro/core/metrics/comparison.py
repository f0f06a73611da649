"""LeDiFlow against the baseline: speedups (in NFE and in seconds) with intervals, which differences
are noise, and whether the evaluation itself can be trusted. Plain Python over quality curves.

A :class:`Curve` is one model's quality against NFE for one solver, with each point's paired
replicates (``core.metrics.intervals``) and its wall-clock cost per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .speedup import SpeedupEstimate, speedup_with_interval
from .intervals import Interval, percentile_interval


@dataclass
class Curve:
    nfe: list[float]
    quality: list[float]
    replicates: list[list[float]]  # per point, paired replicates (same length for every point)
    seconds: list[float] = field(default_factory=list)  # per image, end to end
    x0_seconds: list[float] = field(default_factory=list)  # per image, drawing x0 (LeDiFlow's overhead)

    def __post_init__(self) -> None:
        order = sorted(range(len(self.nfe)), key=lambda i: self.nfe[i])
        for name in ("nfe", "quality", "replicates", "seconds", "x0_seconds"):
            values = getattr(self, name)
            if values:
                if len(values) != len(order):
                    raise ValueError(f"curve: {name} has {len(values)} entries for {len(order)} NFE values")
                setattr(self, name, [values[i] for i in order])

    def at(self, nfe: float, values: Sequence[float]) -> float:
        """``values`` (e.g. seconds) at ``nfe``, interpolated linearly in log NFE (clamped to the grid)."""
        pairs = list(zip(self.nfe, values))
        if nfe <= pairs[0][0]:
            return pairs[0][1]
        for (n0, v0), (n1, v1) in zip(pairs, pairs[1:]):
            if nfe <= n1:
                frac = (math.log(nfe) - math.log(n0)) / (math.log(n1) - math.log(n0))
                return v0 + frac * (v1 - v0)
        return pairs[-1][1]


@dataclass(frozen=True)
class WallClockSpeedup:
    """Seconds per image of the baseline at its reference point against LeDiFlow at the matched NFE
    (its x0 overhead included and shown separately). ``bounded``: LeDiFlow matched at the grid's
    smallest NFE, so the ratio is only a lower bound."""

    baseline_seconds: float
    ledi_seconds: float
    ledi_x0_seconds: float
    bounded: bool

    @property
    def speedup(self) -> float:
        return self.baseline_seconds / self.ledi_seconds if self.ledi_seconds > 0 else math.inf

    def text(self) -> str:
        return (f"{'>= ' if self.bounded else ''}{self.speedup:.2f}x (LeDiFlow {1e3 * self.ledi_seconds:.3g} ms/image "
                f"incl. {1e3 * self.ledi_x0_seconds:.3g} ms for x0; baseline {1e3 * self.baseline_seconds:.3g} ms/image)")


@dataclass(frozen=True)
class Comparison:
    nfe: SpeedupEstimate
    wallclock: WallClockSpeedup | None


def compare(ledi: Curve, baseline: Curve, reference_nfe: float | None, confidence: float = 0.95) -> Comparison:
    """Matched-quality speedup of ``ledi`` over ``baseline`` at ``reference_nfe`` (None: the baseline's
    best point), with its interval and its wall-clock counterpart."""
    est = speedup_with_interval(ledi.nfe, ledi.quality, ledi.replicates, baseline.nfe, baseline.quality,
                                baseline.replicates, reference_nfe, confidence)
    wall = None
    p = est.point
    if p.status != "never" and ledi.seconds and baseline.seconds:
        ref_seconds = baseline.at(p.reference_nfe, baseline.seconds)
        wall = WallClockSpeedup(ref_seconds, ledi.at(p.matched_nfe, ledi.seconds),
                                ledi.at(p.matched_nfe, ledi.x0_seconds or [0.0] * len(ledi.nfe)),
                                bounded=p.status == "at_floor")
    return Comparison(est, wall)


@dataclass(frozen=True)
class CheapestBeatsBest:
    """LeDiFlow's point at its smallest NFE against the baseline's best point, when LeDiFlow is at least as
    good: the matched-quality speedup is then only bounded below, and this gap is the figure to report."""

    ledi_nfe: float
    ledi_quality: float
    baseline_nfe: float
    baseline_quality: float
    gap: Interval  # baseline minus LeDiFlow, paired
    confidence: float

    @property
    def beyond_noise(self) -> bool:
        return self.gap.low > 0

    def text(self, metric: str = "fd") -> str:
        gap = self.baseline_quality - self.ledi_quality
        return (f"LeDiFlow at its smallest NFE ({self.ledi_nfe:g}: {metric} {self.ledi_quality:.4g}) already beats the "
                f"baseline's best point (NFE {self.baseline_nfe:g}: {metric} {self.baseline_quality:.4g}) by {gap:.4g} "
                f"({round(100 * self.confidence)}% CI {self.gap.low:.4g} to {self.gap.high:.4g}, "
                f"{'beyond' if self.beyond_noise else 'within'} the noise); the matched-quality speedup is only "
                "bounded below")


def cheapest_beats_best(ledi: Curve, base: Curve, confidence: float = 0.95) -> CheapestBeatsBest | None:
    """The comparison of LeDiFlow's smallest-NFE point with the baseline's best, or None when LeDiFlow is worse."""
    j = min(range(len(base.nfe)), key=lambda i: base.quality[i])
    if not ledi.nfe or ledi.quality[0] > base.quality[j]:
        return None
    gap = paired_difference(ledi.replicates[0], base.replicates[j], base.quality[j] - ledi.quality[0], confidence)
    return CheapestBeatsBest(ledi.nfe[0], ledi.quality[0], base.nfe[j], base.quality[j], gap, confidence)


def better_per_nfe(ledi: Curve, base: Curve, confidence: float = 0.95) -> dict[int, str]:
    """At each NFE both curves have: ``ledi`` or ``gaussian`` when that model is better beyond the noise (the
    paired interval of the difference excludes 0), else ``noise``."""
    out = {}
    for n, q, reps in zip(ledi.nfe, ledi.quality, ledi.replicates):
        if n in base.nfe:
            j = base.nfe.index(n)
            diff = paired_difference(reps, base.replicates[j], base.quality[j] - q, confidence)
            out[int(n)] = "ledi" if diff.low > 0 else "gaussian" if diff.high < 0 else "noise"
    return out


def paired_difference(a: Sequence[float], b: Sequence[float], point: float, confidence: float = 0.95) -> Interval:
    """Interval of ``b - a`` from paired replicates, recentred on the point difference."""
    diffs = [y - x for x, y in zip(a, b)]
    mean = sum(diffs) / len(diffs)
    return percentile_interval([point + d - mean for d in diffs], confidence)


@dataclass(frozen=True)
class PointWithInterval:
    name: str
    value: float
    interval: Interval


def reliability_warnings(models: Sequence[PointWithInterval], floor: PointWithInterval | None,
                         noise: PointWithInterval | None, judge_accuracy: float | None, *,
                         min_noise_to_floor: float, min_judge_accuracy: float, n_samples: int) -> list[str]:
    """Reasons the evaluation cannot be trusted (empty when it can).

    * a model beats the real-vs-real floor (real images against real images, at the same sample
      size) by more than the noise: no model can, so the judge or the sample size is broken;
    * the N(0, I) row does not lose to the floor by far: the judge cannot tell noise from data;
    * the domain classifier's test accuracy is too low for its features to mean much.
    """
    warnings = []
    if floor is not None:
        beaten = [m for m in models if m.interval.high < floor.interval.low]
        if beaten:
            best = min(beaten, key=lambda m: m.value)
            warnings.append(
                f"{len(beaten)} point(s) beat the real-vs-real floor by more than the noise (best: {best.name} "
                f"{best.value:.4g}, interval {best.interval.low:.4g}-{best.interval.high:.4g}, vs floor "
                f"{floor.value:.4g}, interval {floor.interval.low:.4g}-{floor.interval.high:.4g}); no model can beat "
                f"real data, so the judge or the sample size ({n_samples} images per point) is unreliable")
        if noise is not None and noise.value < min_noise_to_floor * floor.value:
            warnings.append(
                f"the N(0, I) noise row ({noise.value:.4g}) is not at least {min_noise_to_floor:g}x the real-vs-real "
                f"floor ({floor.value:.4g}): the judge barely tells noise from data")
    if judge_accuracy is not None and judge_accuracy < min_judge_accuracy:
        warnings.append(f"the judge's test accuracy {judge_accuracy:.3f} is below {min_judge_accuracy:g}: its features "
                        "are a weak measure of quality")
    return warnings

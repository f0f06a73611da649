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

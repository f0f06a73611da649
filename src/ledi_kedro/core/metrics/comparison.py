"""LeDiFlow against the baseline: speedups (in NFE and in seconds) with intervals, which differences
are noise, and whether the evaluation itself can be trusted. Plain Python over quality curves.

A :class:`Curve` is one model's quality against NFE for one solver, with each point's paired
replicates (``core.metrics.intervals``) and its wall-clock cost per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .speedup import SpeedupEstimate, nfe_to_reach, running_best, speedup_with_interval
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


def compare(ledi: Curve, baseline: Curve, reference_nfe: float | None, confidence: float) -> Comparison:
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


def cheapest_beats_best(ledi: Curve, base: Curve, confidence: float) -> CheapestBeatsBest | None:
    """The comparison of LeDiFlow's smallest-NFE point with the baseline's best, or None when LeDiFlow is worse."""
    j = min(range(len(base.nfe)), key=lambda i: base.quality[i])
    if not ledi.nfe or ledi.quality[0] > base.quality[j]:
        return None
    gap = paired_difference(ledi.replicates[0], base.replicates[j], base.quality[j] - ledi.quality[0], confidence)
    return CheapestBeatsBest(ledi.nfe[0], ledi.quality[0], base.nfe[j], base.quality[j], gap, confidence)


def better_per_nfe(ledi: Curve, base: Curve, confidence: float) -> dict[int, str]:
    """At each NFE both curves have: ``ledi`` or ``gaussian`` when that model is better beyond the noise (the
    paired interval of the difference excludes 0), else ``noise``."""
    out = {}
    for n, q, reps in zip(ledi.nfe, ledi.quality, ledi.replicates):
        if n in base.nfe:
            j = base.nfe.index(n)
            diff = paired_difference(reps, base.replicates[j], base.quality[j] - q, confidence)
            out[int(n)] = "ledi" if diff.low > 0 else "gaussian" if diff.high < 0 else "noise"
    return out


def paired_difference(a: Sequence[float], b: Sequence[float], point: float, confidence: float) -> Interval:
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
    * the domain classifier's accuracy (on the validation split) is too low for its features to mean much.
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
        warnings.append(f"the judge's accuracy {judge_accuracy:.3f} (on the validation split) is below "
                        f"{min_judge_accuracy:g}: its features "
                        "are a weak measure of quality")
    return warnings


@dataclass(frozen=True)
class MatchedLevel:
    """One quality level of the matched-quality table: the baseline's running-best quality at ``level_nfe``,
    the NFE each model's running-best curve needs to reach it, their ratio (baseline / LeDiFlow) with its
    interval over the paired replicates, and the ratio in seconds per image (LeDiFlow's x0 included).

    ``status``: ``reached`` (a number), ``at_floor`` (LeDiFlow reaches the level at its smallest NFE: the ratio
    is a lower bound), ``never`` (LeDiFlow's curve never reaches it)."""

    level_nfe: float
    level: float
    baseline_nfe: float
    ledi_nfe: float | None
    status: str
    nfe_ratio: float | None
    nfe_ratio_interval: tuple[float | None, float | None]  # None ends: not reached in those replicates
    seconds_ratio: float | None
    baseline_seconds: float | None
    ledi_seconds: float | None

    def text(self) -> str:
        if self.status == "never":
            return "not reached"
        lo, hi = self.nfe_ratio_interval
        bound = ">= " if self.status == "at_floor" else ""
        ci = f"{_ratio(lo)} to {_ratio(hi)}"
        return f"{bound}{self.nfe_ratio:.2f}x (CI {ci})"


def _ratio(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.2f}"


def matched_quality(ledi: Curve, base: Curve, confidence: float) -> list[MatchedLevel]:
    """For each quality level the baseline's running-best curve takes on its grid (its running best at each of its
    NFE, repeated levels once): the smallest NFE at which each model's running-best curve reaches it and their
    ratio, in NFE and in seconds. Replicate ``b`` reads the level off the baseline's ``b``-th replicate curve and
    both NFEs off the ``b``-th replicate curves (paired), so the interval holds the noise of both curves; a
    replicate in which LeDiFlow never reaches the level counts as the smallest ratio."""
    out: list[MatchedLevel] = []
    best = running_best(base.quality)
    seen: set[float] = set()
    n_rep = len(base.replicates[0]) if base.replicates else 0
    for j, (n_level, level) in enumerate(zip(base.nfe, best)):
        if level in seen:
            continue
        seen.add(level)
        base_nfe, _ = nfe_to_reach(base.nfe, base.quality, level)
        ledi_nfe, status = nfe_to_reach(ledi.nfe, ledi.quality, level)
        ratios = []
        for b in range(n_rep):
            base_b = [r[b] for r in base.replicates]
            level_b = running_best(base_b)[j]
            nb, _ = nfe_to_reach(base.nfe, base_b, level_b)
            nl, _ = nfe_to_reach(ledi.nfe, [r[b] for r in ledi.replicates], level_b)
            ratios.append(0.0 if nl is None else nb / nl)
        interval: tuple[float | None, float | None] = (None, None)
        if ratios:
            iv = percentile_interval(ratios, confidence)
            interval = (iv.low if iv.low > 0 else None, iv.high if iv.high > 0 else None)
        base_s = base.at(base_nfe, base.seconds) if base.seconds else None
        ledi_s = ledi.at(ledi_nfe, ledi.seconds) if ledi.seconds and ledi_nfe is not None else None
        out.append(MatchedLevel(
            float(n_level), float(level), float(base_nfe), ledi_nfe, status,
            None if ledi_nfe is None else base_nfe / ledi_nfe, interval,
            base_s / ledi_s if base_s and ledi_s else None, base_s, ledi_s))
    return out

"""Matched-quality speedup: how many fewer function evaluations LeDiFlow needs for the
baseline's quality (lower quality values are better, e.g. FD or CMMD)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

Status = Literal["reached", "at_floor", "never"]


@dataclass(frozen=True)
class Speedup:
    """``status``: ``reached`` (a number), ``at_floor`` (LeDiFlow already matches at the smallest
    NFE of the grid, so the speedup is only bounded below: report ">= x"), ``never``."""

    status: Status
    reference_nfe: float
    reference_quality: float
    matched_nfe: float | None
    speedup: float | None  # reference_nfe / matched_nfe (a lower bound when at_floor)

    def text(self) -> str:
        if self.status == "never":
            return "not reached"
        prefix = ">= " if self.status == "at_floor" else ""
        return f"{prefix}{self.speedup:.2f}x"


def matched_quality_speedup(nfe: Sequence[float], ledi_quality: Sequence[float], reference_quality: float,
                            reference_nfe: float) -> Speedup:
    """Smallest NFE at which LeDiFlow's curve reaches ``reference_quality``, log-linearly interpolated.

    The points are sorted by NFE (non-finite qualities dropped) and walked from the smallest NFE;
    the first segment that crosses the reference is interpolated linearly in log(NFE).
    """
    pairs = sorted(zip(nfe, ledi_quality))
    if not pairs:
        raise ValueError("empty quality curve")
    if any(not math.isfinite(q) for _, q in pairs):
        pairs = [(n, q) for n, q in pairs if math.isfinite(q)]
    first_n, first_q = pairs[0]
    if first_q <= reference_quality:
        return Speedup("at_floor", reference_nfe, reference_quality, first_n, reference_nfe / first_n)
    for (n0, q0), (n1, q1) in zip(pairs, pairs[1:]):
        if q1 <= reference_quality:
            frac = (q0 - reference_quality) / (q0 - q1)
            matched = math.exp(math.log(n0) + frac * (math.log(n1) - math.log(n0)))
            return Speedup("reached", reference_nfe, reference_quality, matched, reference_nfe / matched)
    return Speedup("never", reference_nfe, reference_quality, None, None)


def reference_from_curve(nfe: Sequence[float], quality: Sequence[float], reference_nfe: float | None) -> tuple[float, float]:
    """(NFE, quality) of the baseline: at ``reference_nfe``, or its best point when None."""
    pairs = list(zip(nfe, quality))
    if reference_nfe is None:
        n, q = min(pairs, key=lambda p: p[1])
        return n, q
    for n, q in pairs:
        if n == reference_nfe:
            return n, q
    raise ValueError(f"reference NFE {reference_nfe} is not on the baseline's curve {sorted(n for n, _ in pairs)}")


@dataclass(frozen=True)
class SpeedupEstimate:
    """A speedup with its interval from paired replicates of both curves (see core.metrics.intervals)."""

    point: Speedup
    replicates: tuple[Speedup, ...]
    confidence: float

    def _ordered(self) -> list[tuple[float, Status]]:
        # "never" ranks below every number; "at_floor" counts at its (lower-bound) value.
        return sorted(((s.speedup if s.speedup is not None else 0.0), s.status) for s in self.replicates)

    def bounds(self) -> tuple[tuple[float, Status], tuple[float, Status]] | None:
        """(value, status) at the lower and upper (1 -+ confidence) / 2 order statistics."""
        ordered = self._ordered()
        if not ordered:
            return None
        alpha = (1 - self.confidence) / 2
        lo = ordered[max(0, math.floor(alpha * (len(ordered) - 1)))]
        hi = ordered[min(len(ordered) - 1, math.ceil((1 - alpha) * (len(ordered) - 1)))]
        return lo, hi

    def share(self, status: Status) -> float:
        return sum(s.status == status for s in self.replicates) / max(1, len(self.replicates))

    def text(self) -> str:
        """E.g. ``4.10x (95% CI 3.20-5.30)``, ``4.10x (95% CI 3.20 to >= 64.00)``, or for a point at the
        grid's floor ``>= 64.00x (at the floor in 97% of resamples)``."""
        base = self.point.text()
        b = self.bounds()
        if b is None:
            return base
        pct = f"{round(100 * self.confidence):d}%"
        if self.point.status == "at_floor":
            return f"{base} (at the grid's floor in {100 * self.share('at_floor'):.0f}% of resamples)"
        if self.point.status == "never":
            return f"{base} (reached in {100 * (1 - self.share('never')):.0f}% of resamples)"

        def fmt(value: float, status: Status) -> str:
            return "not reached" if status == "never" else (">= " if status == "at_floor" else "") + f"{value:.2f}"

        (lo, lo_s), (hi, hi_s) = b
        sep = "-" if lo_s == "reached" and hi_s == "reached" else " to "
        return f"{base} ({pct} CI {fmt(lo, lo_s)}{sep}{fmt(hi, hi_s)})"


def speedup_with_interval(ledi_nfe: Sequence[float], ledi_quality: Sequence[float],
                          ledi_replicates: Sequence[Sequence[float]], base_nfe: Sequence[float],
                          base_quality: Sequence[float], base_replicates: Sequence[Sequence[float]],
                          reference_nfe: float | None, confidence: float) -> SpeedupEstimate:
    """The matched-quality speedup and its replicates: replicate ``b`` reads the reference off the
    baseline's ``b``-th curve and matches it on LeDiFlow's ``b``-th curve (the curves are paired)."""
    n_ref, q_ref = reference_from_curve(base_nfe, base_quality, reference_nfe)
    point = matched_quality_speedup(ledi_nfe, ledi_quality, q_ref, n_ref)
    reps = []
    n_rep = len(ledi_replicates[0]) if len(ledi_replicates) else 0
    for b in range(n_rep):
        base_b = [r[b] for r in base_replicates]
        n_ref_b, q_ref_b = reference_from_curve(base_nfe, base_b, reference_nfe)
        reps.append(matched_quality_speedup(ledi_nfe, [r[b] for r in ledi_replicates], q_ref_b, n_ref_b))
    return SpeedupEstimate(point, tuple(reps), confidence)


def running_best(quality: Sequence[float]) -> list[float]:
    """The best quality reached at or below each NFE (the points sorted by NFE): what a user who picks the
    cheapest setting that reaches a quality actually gets; a curve that rises again (solver error that the
    judge happens to reward, or noise) does not set the level twice."""
    out, best = [], math.inf
    for q in quality:
        best = min(best, q) if math.isfinite(q) else best
        out.append(best)
    return out


def nfe_to_reach(nfe: Sequence[float], quality: Sequence[float], level: float) -> tuple[float | None, Status]:
    """The smallest NFE at which the running-best curve of (``nfe``, ``quality``) (sorted by NFE) reaches
    ``level``: log-linearly interpolated between grid points; ``at_floor`` when the first point already
    reaches it (the NFE is then an upper bound of what it needs), ``never`` (None) when no point does."""
    best = running_best(quality)
    if not best:
        raise ValueError("empty quality curve")
    if best[0] <= level:
        return float(nfe[0]), "at_floor"
    for n0, q0, n1, q1 in zip(nfe, best, nfe[1:], best[1:]):
        if q1 <= level:
            frac = (q0 - level) / (q0 - q1)
            return math.exp(math.log(n0) + frac * (math.log(n1) - math.log(n0))), "reached"
    return None, "never"

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

    ``nfe`` must be increasing. The curve is walked from the smallest NFE; the first segment that
    crosses the reference is interpolated linearly in log(NFE).
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

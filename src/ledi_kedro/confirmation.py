"""A pre-registered confirmation: the declared endpoint of a profile, measured on fresh seeds, and the verdict
sentence generated from the numbers (docs/design.md §3, "Select on validation, confirm on test").

A :class:`Declaration` (``confirmations/<profile>.yml``, committed before any confirmation run) names the primary
endpoint (LeDiFlow at one solver and NFE minus the baseline's best over its grid), the secondary points, the fresh
seeds and the frozen commit. :func:`confirm` reads each seed's evaluation (its ``metrics.json`` and sweep rows) and
returns the results: per-seed paired intervals (the baseline's best re-selected inside every replicate), the
across-seed mean difference with its t-interval (the training variance included: every seed is a new training
run), Holm-corrected secondary points, KID beside the primary metric, the memorisation check, the baseline's
convergence, the matched-quality ratios across seeds and the verdict: better, within the noise, or worse.
:func:`render` turns results into the Markdown that the README carries between markers.

Plain Python over the evaluation's outputs: no Kedro, no DVC (``benchmarks/confirm.py`` runs the seeds).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from ledi_kedro.core.metrics.intervals import percentile_interval
from ledi_kedro.core.metrics.trend import mean_with_t_interval, t_cdf
from ledi_kedro.core.solvers import check_solver, stages

MIN_SEEDS = 3
VERDICTS = ("better", "within the noise", "worse")


class DeclarationError(ValueError):
    """A declaration that cannot be run as written (the message names the file and the field)."""


@dataclass(frozen=True)
class Point:
    """LeDiFlow at one fixed-step solver and NFE."""

    solver: str
    nfe: int

    def label(self) -> str:
        return f"{self.solver} NFE {self.nfe}"


@dataclass(frozen=True)
class Declaration:
    profile: str  # the configuration environment (conf/<profile>) every seed runs
    declared: str  # the date it was written, before any confirmation run
    frozen_commit: str | None  # the code every seed runs (None: not frozen yet; nothing may run)
    seeds: list[int]  # fresh run seeds, never used in selection
    selection_seeds: list[int]  # the seeds selection used (none of them may be a confirmation seed)
    primary: Point
    secondary: list[Point]
    metric: str  # fd | kid | mmd: the primary metric (its paired replicates give the per-seed intervals)
    baseline_solvers: list[str]  # the baseline's best is taken over these solvers' whole NFE grid
    alpha: float
    confidence: float  # of every interval


def _point(raw: Any, where: str) -> Point:
    if not isinstance(raw, dict) or set(raw) != {"solver", "nfe"}:
        raise DeclarationError(f"{where}: expected {{solver: NAME, nfe: N}}, got {raw!r}")
    solver, nfe = str(raw["solver"]), int(raw["nfe"])
    try:
        check_solver(solver, adaptive=False, what=where)
    except ValueError as exc:
        raise DeclarationError(str(exc)) from exc
    if nfe < 1 or nfe % stages(solver):
        raise DeclarationError(f"{where}: {solver} cannot spend NFE {nfe}")
    return Point(solver, nfe)


def parse_declaration(raw: dict[str, Any], source: str) -> Declaration:
    """The declaration in ``raw`` (the YAML of ``source``), checked: at least :data:`MIN_SEEDS` distinct fresh
    seeds, none of them a selection seed, a 40-hex frozen commit (or null), known solvers and NFEs."""
    known = {f.name for f in Declaration.__dataclass_fields__.values()}
    if unknown := set(raw) - known:
        raise DeclarationError(f"{source}: unknown field(s) {sorted(unknown)}")
    if missing := {"profile", "declared", "frozen_commit", "seeds", "selection_seeds", "primary", "secondary",
                   "metric", "baseline_solvers", "alpha", "confidence"} - set(raw):
        raise DeclarationError(f"{source}: missing field(s) {sorted(missing)}")
    seeds, used = [int(s) for s in raw["seeds"]], [int(s) for s in raw["selection_seeds"]]
    if len(set(seeds)) < MIN_SEEDS or len(set(seeds)) != len(seeds):
        raise DeclarationError(f"{source}: seeds must be at least {MIN_SEEDS} distinct run seeds, got {seeds}")
    if reused := sorted(set(seeds) & set(used)):
        raise DeclarationError(f"{source}: seeds {reused} were used in selection (selection_seeds): a confirmation "
                               "needs fresh seeds")
    commit = raw["frozen_commit"]
    if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", str(commit)):
        raise DeclarationError(f"{source}: frozen_commit must be a full 40-hex commit or null, got {commit!r}")
    if raw["metric"] not in ("fd", "kid", "mmd"):
        raise DeclarationError(f"{source}: metric must be fd, kid or mmd, got {raw['metric']!r}")
    alpha = float(raw["alpha"])
    if not 0.0 < alpha < 1.0:
        raise DeclarationError(f"{source}: alpha must be in (0, 1), got {alpha}")
    for s in raw["baseline_solvers"]:
        try:
            check_solver(str(s), adaptive=False, what=f"{source}: baseline_solvers")
        except ValueError as exc:
            raise DeclarationError(str(exc)) from exc
    return Declaration(str(raw["profile"]), str(raw["declared"]), commit, seeds, used,
                       _point(raw["primary"], f"{source}: primary"),
                       [_point(p, f"{source}: secondary[{i}]") for i, p in enumerate(raw["secondary"])],
                       raw["metric"], [str(s) for s in raw["baseline_solvers"]], alpha, float(raw["confidence"]))


# ---------------------------------------------------------------- one seed
@dataclass(frozen=True)
class SeedEndpoint:
    """One seed's paired difference: LeDiFlow at the point minus the baseline's best over its grid (negative:
    LeDiFlow better), with the percentile interval of the replicates, in each of which the baseline's best is
    chosen again (its own noise is not a free win for it)."""

    difference: float
    interval: tuple[float, float]
    ledi: float
    baseline_best: float
    baseline_best_point: str
    kid_difference: float | None  # the same endpoint in KID (no replicates: its spread comes from the seeds)


def _generated(rows: list[dict[str, Any]], model: str, solvers: Sequence[str]) -> list[dict[str, Any]]:
    return [r for r in rows if r["model"] == model and r["solver"] in solvers]


def seed_endpoint(rows: list[dict[str, Any]], point: Point, metric: str, baseline_solvers: Sequence[str],
                  confidence: float) -> SeedEndpoint:
    """The endpoint on one seed's sweep rows (``evaluate``'s ``sweep_results``, with ``<metric>_replicates``)."""
    ledi = [r for r in _generated(rows, "ledi", [point.solver]) if int(r["nfe_requested"] or 0) == point.nfe]
    if not ledi:
        raise ValueError(f"no LeDiFlow row at {point.label()} in the sweep")
    base = _generated(rows, "gaussian", baseline_solvers)
    if not base:
        raise ValueError(f"no baseline rows for solvers {list(baseline_solvers)} in the sweep")
    lr, best = ledi[0], min(base, key=lambda r: r[metric])
    reps = [min(r[f"{metric}_replicates"][b] for r in base) for b in range(len(lr[f"{metric}_replicates"]))]
    diffs = [lv - bv for lv, bv in zip(lr[f"{metric}_replicates"], reps)]
    iv = percentile_interval(diffs, confidence)
    kid = None
    if "kid" in lr and all("kid" in r for r in base):
        kid = lr["kid"] - min(r["kid"] for r in base)
    return SeedEndpoint(lr[metric] - best[metric], (iv.low, iv.high), lr[metric], best[metric],
                        f"{best['solver']} NFE {best['nfe']:g}", kid)


def _p_two_sided(values: Sequence[float]) -> float:
    """The two-sided one-sample t-test p-value of mean 0."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    if sd == 0:
        return 0.0 if mean != 0 else 1.0
    t = mean / (sd / math.sqrt(n))
    return min(1.0, 2 * (1 - t_cdf(abs(t), n - 1)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    out, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        out[i] = running
    return out


def verdict_of(low: float, high: float) -> str:
    """Lower is better: the interval of LeDiFlow minus the baseline below 0 is 'better', above 0 'worse'."""
    return "better" if high < 0 else "worse" if low > 0 else "within the noise"


@dataclass
class SeedEvaluation:
    """What :func:`confirm` reads of one seed's run."""

    seed: int
    metrics: dict[str, Any]  # evaluate's metrics.json
    rows: list[dict[str, Any]]  # evaluate's sweep_results (with the primary metric's replicates)


@dataclass
class Results:
    profile: str
    declaration: dict[str, Any]
    per_seed: list[dict[str, Any]]
    primary: dict[str, Any]
    secondary: list[dict[str, Any]]
    matched_quality: list[dict[str, Any]]
    checks: dict[str, Any]
    verdict: str  # better | within the noise | worse | no verdict
    sentence: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _r(v: float | None, digits: int = 4) -> float | None:
    """``v`` to ``digits`` significant digits (the figures span 1e-5 to 1e2 across judges and profiles)."""
    return None if v is None else float(f"{float(v):.{digits}g}")


def confirm(decl: Declaration, seeds: list[SeedEvaluation]) -> Results:
    """The declared test on the seeds' evaluations (exactly the declared seeds, each once)."""
    got = sorted(s.seed for s in seeds)
    if got != sorted(decl.seeds):
        raise ValueError(f"confirmation of {decl.profile}: evaluations for seeds {got}, declared {sorted(decl.seeds)}")
    seeds = sorted(seeds, key=lambda s: s.seed)
    conf, metric = decl.confidence, decl.metric
    per_seed, unreliable, copying, unconverged = [], [], [], []
    endpoints = {p: [] for p in [decl.primary, *decl.secondary]}
    for s in seeds:
        m = s.metrics
        if not m.get("evaluation_reliable", False):
            unreliable.append(s.seed)
        mem = [f"{model} ({space})" for model, by_space in m.get("memorisation", {}).items()
               if isinstance(by_space, dict) for space, e in by_space.items() if e.get("copies")]
        if mem:
            copying.append(f"seed {s.seed}: {', '.join(mem)}")
        if not m.get("baseline_converged", False):
            unconverged.append(s.seed)
        checked = any(isinstance(v, dict) for v in m.get("memorisation", {}).values())
        entry: dict[str, Any] = {"seed": s.seed, "reliable": m.get("evaluation_reliable"),
                                 "baseline_converged": m.get("baseline_converged"), "copying": mem,
                                 "memorisation_checked": checked}
        for p in endpoints:
            e = seed_endpoint(s.rows, p, metric, decl.baseline_solvers, conf)
            endpoints[p].append(e)
            entry[p.label()] = {"difference": _r(e.difference), "interval": [_r(e.interval[0]), _r(e.interval[1])],
                                "ledi": _r(e.ledi), "baseline_best": _r(e.baseline_best),
                                "baseline_best_point": e.baseline_best_point, "kid_difference": _r(e.kid_difference, 6),
                                "verdict": verdict_of(*e.interval)}
        per_seed.append(entry)

    def across(p: Point) -> dict[str, Any]:
        diffs = [e.difference for e in endpoints[p]]
        mi = mean_with_t_interval(diffs, conf)
        kids = [e.kid_difference for e in endpoints[p]]
        out = {"point": p.label(), "mean_difference": _r(mi.mean), "t_interval": [_r(mi.interval.low),
                                                                                  _r(mi.interval.high)],
               "seed_std": _r(mi.std), "p_value": _r(_p_two_sided(diffs), 5), "n_seeds": mi.n,
               "verdict": verdict_of(mi.interval.low, mi.interval.high),
               "mean_ledi": _r(sum(e.ledi for e in endpoints[p]) / mi.n),
               "mean_baseline_best": _r(sum(e.baseline_best for e in endpoints[p]) / mi.n)}
        if all(k is not None for k in kids):
            ki = mean_with_t_interval(kids, conf)
            out["kid"] = {"mean_difference": _r(ki.mean, 6), "t_interval": [_r(ki.interval.low, 6),
                                                                             _r(ki.interval.high, 6)],
                          "verdict": verdict_of(ki.interval.low, ki.interval.high)}
        return out

    primary = across(decl.primary)
    secondary = [across(p) for p in decl.secondary]
    for entry, adjusted in zip(secondary, holm([e["p_value"] for e in secondary])):
        entry["p_holm"] = _r(adjusted, 5)
        entry["holm_verdict"] = (("better" if entry["mean_difference"] < 0 else "worse") if adjusted < decl.alpha
                                 else "within the noise")
    checks = {"unreliable_seeds": unreliable, "copying": copying, "baseline_not_converged_seeds": unconverged}
    matched = _matched_across_seeds(seeds, decl, conf)
    verdict, sentence, notes = _sentence(decl, primary, checks)
    return Results(decl.profile, asdict(decl), per_seed, primary, secondary, matched, checks, verdict, sentence, notes)


def _matched_across_seeds(seeds: list[SeedEvaluation], decl: Declaration, conf: float) -> list[dict[str, Any]]:
    """Per solver and baseline level (its running best at each NFE of its grid): the NFE ratio of every seed, and
    their mean with a t-interval where LeDiFlow reached the level on every seed (a level at the grid's floor on
    some seed is a lower bound there, and says so)."""
    out = []
    solvers = list(dict.fromkeys(s for seed in seeds for s in seed.metrics.get("solvers", {})))
    for solver in solvers:
        by_level: dict[float, list[dict[str, Any]]] = {}
        for seed in seeds:
            for m in seed.metrics["solvers"].get(solver, {}).get("matched_quality", []):
                by_level.setdefault(m["level_nfe"], []).append(m)
        for level_nfe, entries in sorted(by_level.items()):
            ratios = [e["nfe_ratio"] for e in entries]
            row: dict[str, Any] = {"solver": solver, "level_nfe": level_nfe, "n_seeds": len(entries),
                                   "ratios": ratios, "statuses": [e["status"] for e in entries]}
            if len(entries) == len(seeds) and all(r is not None for r in ratios) and len(ratios) >= 2:
                mi = mean_with_t_interval(ratios, conf)
                row |= {"mean_ratio": _r(mi.mean), "t_interval": [_r(mi.interval.low), _r(mi.interval.high)],
                        "lower_bound": any(e["status"] == "at_floor" for e in entries)}
            out.append(row)
    return out


def _sentence(decl: Declaration, primary: dict[str, Any], checks: dict[str, Any]) -> tuple[str, str, list[str]]:
    """The verdict and the one sentence the README publishes, both from the numbers; no verdict when a seed's own
    checks mark its evaluation unreliable or a model copies its training images."""
    p, conf = primary, round(100 * decl.confidence)
    notes = []
    if checks["baseline_not_converged_seeds"]:
        notes.append(f"the baseline's quality still moved over the last quarter of training on seeds "
                     f"{checks['baseline_not_converged_seeds']}: its best may improve with a larger budget")
    where = (f"LeDiFlow at {decl.primary.label()} against the baseline's best over its {', '.join(decl.baseline_solvers)} "
             f"grid ({decl.metric}, {p['n_seeds']} fresh seeds)")
    if checks["unreliable_seeds"] or checks["copying"]:
        why = []
        if checks["unreliable_seeds"]:
            why.append(f"the evaluation's own checks mark seeds {checks['unreliable_seeds']} unreliable")
        if checks["copying"]:
            why.append("the memorisation check flags " + "; ".join(checks["copying"]))
        return "no verdict", f"{where}: no verdict, {' and '.join(why)}.", notes
    diff, (lo, hi) = p["mean_difference"], p["t_interval"]
    words = {"better": "better than", "worse": "worse than", "within the noise": "within the noise of"}[p["verdict"]]
    sentence = (f"{where}: LeDiFlow is {words} the baseline's best, mean difference {diff:+.3g} "
                f"({conf}% t-interval {lo:+.3g} to {hi:+.3g}; LeDiFlow {p['mean_ledi']:.3g}, baseline's best "
                f"{p['mean_baseline_best']:.3g}).")
    return p["verdict"], sentence, notes


# ---------------------------------------------------------------- rendering
def render(results: dict[str, Any]) -> str:
    """The Markdown of a results file (``Results.to_json()``): the verdict sentence, the primary and secondary
    endpoints across seeds, each seed's paired interval and checks, and the matched-quality ratios."""
    d, p = results["declaration"], results["primary"]
    metric = d["metric"]
    lines = [f"**{results['verdict']}.** {results['sentence']}", ""]
    lines += [f"Declared {d['declared']} (`confirmations/{results['profile']}.yml`), frozen commit "
              f"`{(d['frozen_commit'] or 'none')[:12]}`, seeds {', '.join(map(str, d['seeds']))}.", ""]
    lines += [f"| endpoint ({metric}: LeDiFlow minus the baseline's best) | mean | t-interval | p | verdict |",
              "|---|---|---|---|---|",
              f"| primary: {p['point']} | {p['mean_difference']:+.3g} | {p['t_interval'][0]:+.3g} to "
              f"{p['t_interval'][1]:+.3g} | {p['p_value']:.2g} | {p['verdict']} |"]
    if "kid" in p:
        k = p["kid"]
        lines.append(f"| primary in KID | {k['mean_difference']:+.3g} | {k['t_interval'][0]:+.3g} to "
                     f"{k['t_interval'][1]:+.3g} | | {k['verdict']} |")
    lines += [f"| secondary: {s['point']} | {s['mean_difference']:+.3g} | {s['t_interval'][0]:+.3g} to "
              f"{s['t_interval'][1]:+.3g} | {s['p_holm']:.2g} (Holm) | {s['holm_verdict']} |"
              for s in results["secondary"]]
    lines += ["", f"| seed | {p['point']}: difference (paired interval) | baseline's best | reliable | baseline "
                  "converged | memorisation |", "|---|---|---|---|---|---|"]
    for s in results["per_seed"]:
        e = s[p["point"]]
        lines.append(f"| {s['seed']} | {e['difference']:+.3g} ({e['interval'][0]:+.3g} to {e['interval'][1]:+.3g}) | "
                     f"{e['baseline_best']:.3g} at {e['baseline_best_point']} | {'yes' if s['reliable'] else 'NO'} | "
                     f"{'yes' if s['baseline_converged'] else 'no'} | "
                     f"{_memorisation_cell(s)} |")
    rows = [m for m in results["matched_quality"] if "mean_ratio" in m]
    if rows:
        lines += ["", "Matched quality: NFE the baseline's running-best curve needs for its quality at each NFE, "
                      "over the NFE LeDiFlow's needs (mean over seeds, t-interval; '>=' where LeDiFlow reached it at "
                      "its smallest NFE on some seed):", "",
                  "| solver | baseline's level at NFE | ratio in NFE | t-interval |", "|---|---|---|---|"]
        lines += [f"| {m['solver']} | {m['level_nfe']:g} | {'>= ' if m['lower_bound'] else ''}{m['mean_ratio']:.2f}x | "
                  f"{m['t_interval'][0]:.2f} to {m['t_interval'][1]:.2f} |" for m in rows]
    lines += [f"\nNote: {n}." for n in results.get("notes", [])]
    return "\n".join(lines)


def _memorisation_cell(seed: dict[str, Any]) -> str:
    if seed["copying"]:
        return "COPIES: " + ", ".join(seed["copying"])
    return "no copying found" if seed.get("memorisation_checked") else "not checked (no held-out images)"


def render_pending(decl: Declaration) -> str:
    """What the README says of a declared profile before its confirmation has run."""
    return (f"Not confirmed yet: `confirmations/{decl.profile}.yml` declares LeDiFlow at {decl.primary.label()} "
            f"against the baseline's best over its {', '.join(decl.baseline_solvers)} grid ({decl.metric}) on seeds "
            f"{', '.join(map(str, decl.seeds))}; `python benchmarks/confirm.py --profile {decl.profile} --readme` "
            "runs them and writes the results here.")


MARKER = "<!-- confirmation:{profile}:{end} -->"


def replace_between_markers(text: str, profile: str, body: str) -> str:
    """``text`` with what lies between the profile's markers replaced by ``body`` (an error names the markers when
    they are missing)."""
    start, end = MARKER.format(profile=profile, end="start"), MARKER.format(profile=profile, end="end")
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no '{start}' ... '{end}' markers")
    return text[: i + len(start)] + "\n" + body.strip() + "\n" + text[j:]


def between_markers(text: str, profile: str) -> str | None:
    start, end = MARKER.format(profile=profile, end="start"), MARKER.format(profile=profile, end="end")
    i, j = text.find(start), text.find(end)
    return None if i < 0 or j < i else text[i + len(start): j].strip()

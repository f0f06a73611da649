"""The pre-registered confirmation (ledi_kedro.confirmation): declarations that refuse reused seeds, the per-seed
endpoint with the baseline's best re-selected in every replicate, the across-seed t-interval, Holm's correction,
the generated verdict, and the README's sections that must equal the results files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from ledi_kedro.confirmation import (
    DeclarationError, Point, SeedEvaluation, between_markers, confirm, holm, parse_declaration, render,
    render_pending, replace_between_markers, seed_endpoint,
)
from tests.conftest import PROJECT_ROOT

DECLARATION = {"profile": "tiny", "declared": "2026-12-07", "frozen_commit": "a" * 40, "seeds": [11, 12, 13],
               "selection_seeds": [0, 1], "primary": {"solver": "midpoint", "nfe": 2},
               "secondary": [{"solver": "euler", "nfe": 1}], "metric": "fd", "baseline_solvers": ["euler", "midpoint"],
               "alpha": 0.05, "confidence": 0.95}


def _decl(**changes):
    return parse_declaration({**DECLARATION, **changes}, "confirmations/tiny.yml")


@pytest.mark.parametrize("changes, message", [
    ({"seeds": [0, 12, 13]}, r"seeds \[0\] were used in selection"),
    ({"seeds": [11, 12]}, "at least 3 distinct run seeds"),
    ({"seeds": [11, 11, 12]}, "at least 3 distinct"),
    ({"frozen_commit": "HEAD"}, "full 40-hex commit"),
    ({"primary": {"solver": "midpoint", "nfe": 3}}, "midpoint cannot spend NFE 3"),
    ({"primary": {"solver": "dopri5", "nfe": 4}}, "unknown confirmations/tiny.yml: primary 'dopri5'"),
    ({"metric": "fid"}, "metric must be fd, kid or mmd"),
    ({"extra": 1}, r"unknown field\(s\) \['extra'\]"),
])
def test_a_declaration_names_what_is_wrong(changes, message):
    with pytest.raises(DeclarationError, match=message):
        _decl(**changes)


def _row(model, solver, nfe, fd, reps, kid=None):
    return {"model": model, "solver": solver, "nfe_requested": nfe, "nfe": float(nfe), "fd": fd, "fd_replicates": reps,
            "kid": fd / 100 if kid is None else kid}


def test_the_baseline_best_is_chosen_again_inside_every_replicate():
    # the baseline's best point is euler NFE 4 (2.0), but in replicate 1 its midpoint NFE 2 point is better (1.0)
    rows = [_row("ledi", "midpoint", 2, 1.5, [1.5, 1.5, 1.5]),
            _row("gaussian", "euler", 4, 2.0, [2.0, 2.0, 2.0]),
            _row("gaussian", "midpoint", 2, 2.5, [2.5, 1.0, 2.5]),
            _row("gaussian", "dopri5", 0, 0.1, [0.1, 0.1, 0.1])]  # not a declared baseline solver
    e = seed_endpoint(rows, Point("midpoint", 2), "fd", ["euler", "midpoint"], confidence=0.99)
    assert e.difference == pytest.approx(-0.5) and e.baseline_best_point == "euler NFE 4"
    # replicate differences -0.5, +0.5, -0.5 (the best re-selected): the interval reaches above 0; had the best
    # stayed euler NFE 4 in every replicate, every difference would be -0.5
    assert e.interval[0] == pytest.approx(-0.5) and e.interval[1] == pytest.approx(0.49, abs=1e-9)
    assert e.kid_difference == pytest.approx(0.015 - 0.02)
    with pytest.raises(ValueError, match="no LeDiFlow row at euler NFE 1"):
        seed_endpoint(rows, Point("euler", 1), "fd", ["euler"], 0.95)


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def _metrics(reliable=True, converged=True, copies=False):
    mem = {"ledi": {"judge": {"copies": copies}, "pixels": {"copies": False}}, "real_vs_real_nn_train_median": 0.0}
    return {"evaluation_reliable": reliable, "baseline_converged": converged, "memorisation": mem, "solvers": {
        "midpoint": {"matched_quality": [{"level_nfe": 2.0, "nfe_ratio": 2.0 + 0.1, "status": "reached"}]}}}


def _seed(seed, ledi_fd, base_fd, **kw):
    rows = [_row("ledi", "midpoint", 2, ledi_fd, [ledi_fd] * 4), _row("ledi", "euler", 1, ledi_fd + 1, [ledi_fd + 1] * 4),
            _row("gaussian", "euler", 4, base_fd, [base_fd] * 4), _row("gaussian", "midpoint", 2, base_fd + 3, [9.0] * 4)]
    return SeedEvaluation(seed, _metrics(**kw), rows)


def test_a_confirmation_on_three_seeds_writes_its_verdict_from_the_numbers():
    decl = _decl()
    better = confirm(decl, [_seed(11, 1.0, 2.0), _seed(12, 1.2, 2.1), _seed(13, 0.9, 2.2)])
    # differences -1.0, -0.9, -1.3: mean -1.0667, sd 0.2082, t_{0.975, 2} = 4.3027
    half = 4.302653 * 0.2081666 / math.sqrt(3)
    assert better.primary["mean_difference"] == pytest.approx(-1.0667, abs=1e-3)  # 4 significant digits
    assert better.primary["t_interval"] == pytest.approx([-1.0667 - half, -1.0667 + half], abs=1e-3)
    assert better.verdict == "better" and better.sentence.startswith("LeDiFlow at midpoint NFE 2 against the baseline's")
    assert "better than the baseline's best, mean difference -1.07" in better.sentence
    assert better.secondary[0]["point"] == "euler NFE 1" and better.secondary[0]["p_holm"] == better.secondary[0]["p_value"]
    assert better.matched_quality[0]["mean_ratio"] == pytest.approx(2.1) and not better.matched_quality[0]["lower_bound"]
    mixed = confirm(decl, [_seed(11, 1.0, 2.0), _seed(12, 3.0, 2.1), _seed(13, 2.0, 2.2)])
    assert mixed.verdict == "within the noise" and "within the noise of the baseline's best" in mixed.sentence
    unreliable = confirm(decl, [_seed(11, 1.0, 2.0), _seed(12, 1.2, 2.1, reliable=False), _seed(13, 0.9, 2.2)])
    assert unreliable.verdict == "no verdict" and "mark seeds [12] unreliable" in unreliable.sentence
    copying = confirm(decl, [_seed(11, 1.0, 2.0, copies=True), _seed(12, 1.2, 2.1), _seed(13, 0.9, 2.2)])
    assert copying.verdict == "no verdict" and "seed 11: ledi (judge)" in copying.sentence
    unconverged = confirm(decl, [_seed(11, 1.0, 2.0, converged=False), _seed(12, 1.2, 2.1), _seed(13, 0.9, 2.2)])
    assert unconverged.verdict == "better" and "seeds [11]" in unconverged.notes[0]
    with pytest.raises(ValueError, match=r"evaluations for seeds \[11, 12\], declared \[11, 12, 13\]"):
        confirm(decl, [_seed(11, 1.0, 2.0), _seed(12, 1.2, 2.1)])
    text = render(json.loads(json.dumps(better.to_json())))  # what the results file round-trips to
    assert text.startswith("**better.** LeDiFlow at midpoint NFE 2") and "| 12 | -0.9 (-0.9 to -0.9) |" in text


def test_the_readme_sections_are_the_confirmations_results():
    """Every declared profile has its markers in the README; between them, the rendering of its results file, or
    the pending note before it ran."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    declarations = sorted((PROJECT_ROOT / "confirmations").glob("*.yml"))
    assert {p.stem for p in declarations} >= {"cpu_benchmark", "cifar10_cpu"}
    for path in declarations:
        decl = parse_declaration(yaml.safe_load(path.read_text()), str(path))
        results = path.with_name(f"{path.stem}_results.json")
        expected = render(json.loads(results.read_text())) if results.is_file() else render_pending(decl)
        assert between_markers(readme, decl.profile) == expected.strip(), (
            f"README's {decl.profile} section differs from {results.name if results.is_file() else 'the pending note'}:"
            f" run python benchmarks/confirm.py --profile {decl.profile} --report-only --readme")


def test_markers_are_replaced_in_place_and_missing_ones_are_named():
    text = "a\n<!-- confirmation:p:start -->\nold\n<!-- confirmation:p:end -->\nb"
    assert between_markers(replace_between_markers(text, "p", "new"), "p") == "new"
    with pytest.raises(ValueError, match="no '<!-- confirmation:q:start -->'"):
        replace_between_markers(text, "q", "x")

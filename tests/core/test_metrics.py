import math

import pytest
import torch

from ledi_kedro.core.metrics import (
    frechet_distance, gaussian_frechet_distance, kid, median_heuristic_sigma, mmd_rbf,
)
from ledi_kedro.core.metrics.speedup import matched_quality_speedup, reference_from_curve


def test_frechet_distance_of_gaussians_with_known_moments():
    # 1-D: FD = (m1 - m2)^2 + (s1 - s2)^2
    assert gaussian_frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1)
    # diagonal covariances: sum over dimensions
    fd = gaussian_frechet_distance([0.0, 1.0], torch.diag(torch.tensor([1.0, 9.0])), [1.0, 1.0],
                                   torch.diag(torch.tensor([4.0, 1.0])))
    assert fd == pytest.approx(1 + (1 - 2) ** 2 + (3 - 1) ** 2)
    # samples approach the closed form
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 2, generator=g) * torch.tensor([1.0, 3.0])
    b = torch.randn(200_000, 2, generator=g) * torch.tensor([2.0, 1.0]) + torch.tensor([1.0, 0.0])
    assert frechet_distance(a, b) == pytest.approx(1 + 1 + 4, rel=0.02)


def test_frechet_distance_with_correlated_covariances():
    cov_a = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    cov_b = torch.tensor([[1.0, -0.3], [-0.3, 2.0]], dtype=torch.float64)
    # reference: Tr(A + B - 2 (A^1/2 B A^1/2)^1/2) via eigen-decomposition of A B (same eigenvalues)
    eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0).sqrt().sum()
    expected = float(torch.trace(cov_a) + torch.trace(cov_b) - 2 * eig)
    assert gaussian_frechet_distance([0, 0], cov_a, [0, 0], cov_b) == pytest.approx(expected, abs=1e-9)


def test_mmd_of_a_set_with_itself_is_zero_and_grows_with_shift():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    assert mmd_rbf(x, x, sigma=10.0) == pytest.approx(0.0, abs=1e-12)
    assert mmd_rbf(x, x + 0.5, sigma=1.0) > mmd_rbf(x, x + 0.1, sigma=1.0) > 0


def test_cmmd_matches_the_reference_definition():
    # CMMD (Jayasumana et al. 2024): 1000 * (mean k(x,x') + mean k(y,y') - 2 mean k(x,y)),
    # k = exp(-||a-b||^2 / (2 * 10^2)), all pairs including i == j, written out with loops.
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64) * 5
    y = torch.randn(5, 3, generator=g, dtype=torch.float64) * 5 + 2

    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / 200.0)

    kxx = sum(k(a, b) for a in x for b in x) / 36
    kyy = sum(k(a, b) for a in y for b in y) / 25
    kxy = sum(k(a, b) for a in x for b in y) / 30
    assert mmd_rbf(x, y, sigma=10.0, scale=1000.0) == pytest.approx(1000 * (kxx + kyy - 2 * kxy), rel=1e-10)


def test_kid_is_near_zero_for_same_distribution_and_positive_otherwise():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2000, 4, generator=g), torch.randn(2000, 4, generator=g)
    assert abs(kid(a, b, subsets=10, subset_size=500)) < 0.01
    assert kid(a, b + 1.0, subsets=10, subset_size=500) > 0.1


def test_median_heuristic():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    assert median_heuristic_sigma(x) == pytest.approx(2.0)  # pairwise distances 1, 3, 2


NFE = [1, 2, 4, 8, 16, 32, 64]


def test_speedup_interpolates_log_linearly():
    base = [100, 50, 25, 12, 8, 6, 5.0]
    ledi = [40, 20, 10, 6, 4.0, 3.5, 3.0]  # crosses 5.0 between NFE 8 (6) and 16 (4)
    ref_nfe, ref_q = reference_from_curve(NFE, base, 64)
    sp = matched_quality_speedup(NFE, ledi, ref_q, ref_nfe)
    matched = math.exp(math.log(8) + 0.5 * (math.log(16) - math.log(8)))  # halfway: 6 -> 5 -> 4
    assert sp.status == "reached" and sp.matched_nfe == pytest.approx(matched)
    assert sp.speedup == pytest.approx(64 / matched) and sp.text() == f"{64 / matched:.2f}x"


def test_speedup_at_the_grid_floor_is_a_lower_bound():
    sp = matched_quality_speedup(NFE, [1.0] * 7, 5.0, 64)
    assert sp.status == "at_floor" and sp.text() == ">= 64.00x"


def test_speedup_never_reached_is_not_a_number():
    sp = matched_quality_speedup(NFE, [9, 8, 7, 7, 7, 7, 7.0], 5.0, 64)
    assert sp.status == "never" and sp.speedup is None and sp.text() == "not reached"


def test_non_monotonic_curves_use_the_first_crossing():
    sp = matched_quality_speedup(NFE, [10, 4, 12, 3, 3, 3, 3.0], 5.0, 64)
    assert sp.status == "reached" and 1 < sp.matched_nfe < 2


def test_reference_from_curve():
    assert reference_from_curve(NFE, [7, 6, 5, 4, 3, 3.5, 4.0], None) == (16, 3)  # best point
    with pytest.raises(ValueError, match="reference NFE 128"):
        reference_from_curve(NFE, [1] * 7, 128)


def test_nearest_distances_match_brute_force():
    from ledi_kedro.core.metrics.memorisation import nearest_distances

    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(37, 5, generator=g), torch.randn(50, 5, generator=g)
    expected = torch.cdist(q.double(), bank.double()).min(dim=1).values
    torch.testing.assert_close(nearest_distances(q, bank, chunk=8).double(), expected, rtol=1e-4, atol=1e-4)


def test_memorisation_tells_copies_from_new_samples():
    from ledi_kedro.core.metrics.memorisation import memorisation, nearest_distances

    g = torch.Generator().manual_seed(0)
    training, held_out, fresh = (torch.randn(n, 8, generator=g) for n in (2000, 400, 400))
    held_out_nn = nearest_distances(held_out, training)
    copies = training[:400] + 0.01 * torch.randn(400, 8, generator=g)
    copied = memorisation(nearest_distances(copies, training), held_out_nn, len(training))
    new = memorisation(nearest_distances(fresh, training), held_out_nn, len(training))
    assert copied.close_fraction == 1.0 and copied.ratio < 0.05
    assert new.close_fraction < 0.12 and 0.8 < new.ratio < 1.25  # same distribution as held-out: ~5%, ratio ~1
    assert new.to_dict()["ratio"] == new.ratio and new.n_training == 2000
    with pytest.raises(ValueError, match="quantile"):
        memorisation(held_out_nn, held_out_nn, 1, quantile=1.5)


def test_the_close_fraction_null_is_beta_binomial_and_its_limit_holds_its_rate():
    from ledi_kedro.core.metrics.memorisation import (
        close_fraction_limit, close_fraction_p_value, held_out_threshold, memorisation,
    )

    # k = ceil(0.05 * 19) = 1: a new sample falls below the smallest of 19 exchangeable distances with probability
    # 1/20, so with one sample the count is Bernoulli(1/20) and P(X >= 1) = 0.05 exactly
    assert close_fraction_p_value(1.0, 1, 19, 0.05) == pytest.approx(0.05, abs=1e-12)
    assert close_fraction_p_value(0.0, 50, 19, 0.05) == pytest.approx(1.0)
    # the limit: the smallest fraction a copying-free model exceeds with probability <= alpha / points
    limit = close_fraction_limit(200, 200, 0.05, alpha=0.05, n_tests=10)
    c = round(limit * 200)
    assert close_fraction_p_value((c + 1) / 200, 200, 200, 0.05) <= 0.005 < close_fraction_p_value(c / 200, 200, 200,
                                                                                                     0.05)
    assert close_fraction_limit(200, 200, 0.05, 0.05, 1) < limit  # more points, a higher bar
    # simulated: held-out and generated distances from one distribution; the count above the limit is rare
    g = torch.Generator().manual_seed(0)
    exceed = 0
    trials = 2000
    for _ in range(trials):
        held, gen = torch.rand(200, generator=g), torch.rand(200, generator=g)
        exceed += memorisation(gen, held, 1, 0.05).close_fraction > close_fraction_limit(200, 200, 0.05, 0.05, 1)
    assert exceed / trials <= 0.05 + 3 * (0.05 * 0.95 / trials) ** 0.5
    assert held_out_threshold(torch.tensor([3.0, 1.0, 2.0, 5.0]), 0.5) == 2.0  # the 2nd smallest of 4
    with pytest.raises(ValueError, match="alpha"):
        close_fraction_limit(10, 10, 0.05, 0.0, 1)


def test_running_best_and_the_nfe_to_reach_a_level():
    from ledi_kedro.core.metrics.speedup import nfe_to_reach, running_best

    assert running_best([5.0, 3.0, 4.0, 2.0]) == [5.0, 3.0, 3.0, 2.0]
    nfe = [1, 2, 4, 8]
    assert nfe_to_reach(nfe, [5.0, 3.0, 4.0, 2.0], 6.0) == (1.0, "at_floor")
    assert nfe_to_reach(nfe, [5.0, 3.0, 4.0, 2.0], 1.0) == (None, "never")
    # 2.5 lies halfway between 3 (NFE 4 on the running best) and 2 (NFE 8): log-linear, sqrt(4 * 8)
    n, status = nfe_to_reach(nfe, [5.0, 3.0, 4.0, 2.0], 2.5)
    assert status == "reached" and n == pytest.approx(32 ** 0.5)
    n, _ = nfe_to_reach(nfe, [5.0, 3.0, 4.0, 2.0], 3.0)  # the rise at NFE 4 is ignored: reached at NFE 2
    assert n == pytest.approx(2.0)


def test_matched_quality_reads_each_baseline_level_off_both_running_best_curves():
    from ledi_kedro.core.metrics.comparison import Curve, matched_quality

    reps = lambda qs: [[q] * 4 for q in qs]  # noqa: E731 - replicates equal to the points: a zero-width interval
    base = Curve([1, 2, 4, 8], [8.0, 4.0, 2.0, 3.0], reps([8.0, 4.0, 2.0, 3.0]), [1.0, 2.0, 4.0, 8.0])
    ledi = Curve([1, 2, 4, 8], [4.0, 2.0, 1.0, 1.0], reps([4.0, 2.0, 1.0, 1.0]), [2.0, 3.0, 5.0, 9.0])
    levels = matched_quality(ledi, base, 0.95)
    # the baseline's running best: 8, 4, 2, 2 -> three levels (NFE 8's rise is not a level)
    assert [(m.level_nfe, m.level) for m in levels] == [(1.0, 8.0), (2.0, 4.0), (4.0, 2.0)]
    assert [m.status for m in levels] == ["at_floor", "at_floor", "reached"]
    assert [m.ledi_nfe for m in levels] == [1.0, 1.0, pytest.approx(2.0)]
    assert [m.nfe_ratio for m in levels] == [1.0, 2.0, pytest.approx(2.0)]
    assert levels[2].nfe_ratio_interval == (pytest.approx(2.0), pytest.approx(2.0))
    assert levels[2].seconds_ratio == pytest.approx(4.0 / 3.0)  # baseline 4 s at NFE 4, LeDiFlow 3 s at NFE 2
    assert levels[0].text().startswith(">= 1.00x")
    worse = Curve([1, 2, 4, 8], [9.0, 9.0, 9.0, 9.0], reps([9.0] * 4), [1.0] * 4)
    assert [m.status for m in matched_quality(worse, base, 0.95)] == ["never"] * 3
    assert matched_quality(worse, base, 0.95)[0].text() == "not reached"


def test_t_quantiles_match_the_tables_and_t_intervals_cover_the_mean():
    from ledi_kedro.core.metrics.trend import mean_with_t_interval, t_cdf, t_quantile

    # textbook values of t_{0.975} at 2, 4 and 10 degrees of freedom, and t_{0.95} at 1 (= tan(0.45 pi))
    for df, expected in ((2, 4.302653), (4, 2.776445), (10, 2.228139)):
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-5)
    assert t_quantile(0.95, 1) == pytest.approx(math.tan(0.45 * math.pi), abs=1e-6)
    assert t_cdf(0.0, 3) == pytest.approx(0.5) and t_cdf(-2.776445, 4) == pytest.approx(0.025, abs=1e-6)
    m = mean_with_t_interval([1.0, 2.0, 3.0], 0.95)  # mean 2, std 1, half-width 4.303 / sqrt(3)
    assert m.mean == 2.0 and m.std == 1.0
    assert (m.interval.low, m.interval.high) == (pytest.approx(2 - 4.302653 / 3 ** 0.5, abs=1e-5),
                                                 pytest.approx(2 + 4.302653 / 3 ** 0.5, abs=1e-5))
    with pytest.raises(ValueError, match="at least 2 replicates"):
        mean_with_t_interval([1.0], 0.95)


def test_tail_trend_tells_a_descent_from_noise():
    from ledi_kedro.core.metrics.trend import tail_trend

    steps = list(range(400, 8001, 400))  # 20 evaluations; the last quarter: steps 6000-8000, 6 of them
    falling = [100.0 - 0.005 * s for s in steps]  # exact line: 60 -> 50 over the quarter, -16.7%
    trend = tail_trend(steps, falling, 0.25, 0.9)
    assert (trend.first_step, trend.last_step, trend.n_points) == (6000, 8000, 6)
    assert trend.relative_change == pytest.approx(-10 / 70) and not trend.flat and "still falling" in trend.text()
    g = torch.Generator().manual_seed(0)
    noisy = [20.0 + float(e) for e in torch.randn(len(steps), generator=g) * 0.3]
    assert tail_trend(steps, noisy, 0.25, 0.9).flat  # no trend: the interval holds 0 (seed-fixed noise)
    assert tail_trend([1, 2], [3.0, 2.0], 0.25, 0.9) is None

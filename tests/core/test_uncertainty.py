"""Error bars: half-sample replicates are exact weighted statistics, their spread matches the sampling
noise of the full-sample value, and speedup intervals / reliability checks read them correctly."""

import pytest
import torch

from ledi_kedro.core.metrics.comparison import Curve, PointWithInterval, compare, paired_difference, reliability_warnings
from ledi_kedro.core.metrics import frechet_distance, mmd_rbf
from ledi_kedro.core.metrics.speedup import speedup_with_interval
from ledi_kedro.core.metrics.intervals import Interval, QualityBootstrap, half_sample_weights, percentile_interval


def test_half_sample_weights_keep_half_of_the_rows():
    w = half_sample_weights(11, 30, torch.Generator().manual_seed(0))
    assert w.shape == (30, 11) and set(w.unique().tolist()) == {0.0, 1.0}
    assert (w.sum(1) == 5).all()
    assert len({tuple(r.tolist()) for r in w}) > 20  # different halves


@pytest.mark.parametrize("metric", ["fd", "mmd", "kid"])
def test_weighted_replicate_equals_the_metric_on_the_kept_rows(metric):
    g = torch.Generator().manual_seed(0)
    ref, gen = torch.randn(40, 6, generator=g), torch.randn(30, 6, generator=g) + 0.3
    boot = QualityBootstrap(metric, 2, 0.95, sigma=3.0)
    w_ref = half_sample_weights(40, 2, torch.Generator().manual_seed(1))
    w_gen = half_sample_weights(30, 2, torch.Generator().manual_seed(2))
    raw = (boot._fd if metric == "fd" else boot._kernel)(ref.double(), [gen.double()], w_ref, [w_gen])
    r_rows, g_rows = ref[w_ref[0].bool()], gen[w_gen[0].bool()]
    if metric == "fd":
        expected = frechet_distance(g_rows, r_rows)
    elif metric == "mmd":
        expected = mmd_rbf(g_rows, r_rows, sigma=3.0)
    else:  # unbiased MMD^2 with the cubic polynomial kernel, written out
        def k(a, b):
            return (a.double() @ b.double().T / 6 + 1) ** 3
        n, m = len(g_rows), len(r_rows)
        kxx, kyy = k(g_rows, g_rows), k(r_rows, r_rows)
        expected = float((kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1))
                         - 2 * k(g_rows, r_rows).mean())
    assert float(raw[0, 0]) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_fd_replicates_use_the_small_gram_matrix_when_rows_are_fewer_than_dimensions():
    g = torch.Generator().manual_seed(3)
    ref, gen = torch.randn(80, 20, generator=g), torch.randn(16, 20, generator=g)  # 8 kept rows < 20 dims
    boot = QualityBootstrap("fd", 2, 0.95)
    w_ref = half_sample_weights(80, 2, torch.Generator().manual_seed(1))
    w_gen = half_sample_weights(16, 2, torch.Generator().manual_seed(2))
    raw = boot._fd(ref.double(), [gen.double()], w_ref, [w_gen])
    assert float(raw[0, 1]) == pytest.approx(frechet_distance(gen[w_gen[1].bool()], ref[w_ref[1].bool()]), rel=1e-6)


def test_interval_width_matches_the_sampling_noise_of_fd():
    """Draw many independent sample pairs: the replicates' spread should estimate the spread of FD."""
    values, halfwidths = [], []
    for trial in range(30):
        g = torch.Generator().manual_seed(100 + trial)
        ref, gen = torch.randn(600, 4, generator=g), torch.randn(150, 4, generator=g) + 0.3
        point = frechet_distance(gen, ref)
        values.append(point)
        boot = QualityBootstrap("fd", 100, 0.95, seed=trial)
        iv = boot.interval(boot.replicates(ref, [gen], [point])[0])
        assert iv.low <= point <= iv.high
        halfwidths.append((iv.high - iv.low) / 2)
    true_sd = float(torch.tensor(values).std())
    est_sd = sum(halfwidths) / len(halfwidths) / 1.96
    assert 0.6 * true_sd < est_sd < 1.8 * true_sd


def test_replicates_are_recentred_and_paired_through_the_reference():
    g = torch.Generator().manual_seed(4)
    ref = torch.randn(200, 3, generator=g)
    a, b = torch.randn(100, 3, generator=g) + 1, torch.randn(100, 3, generator=g) + 1
    points = [frechet_distance(a, ref), frechet_distance(b, ref)]
    reps = QualityBootstrap("fd", 50, 0.95).replicates(ref, [a, b], points)
    assert reps.shape == (2, 50)
    torch.testing.assert_close(reps.mean(1), torch.tensor(points, dtype=torch.float64))
    assert torch.corrcoef(reps)[0, 1] > 0.2  # the shared reference half moves both points together
    with pytest.raises(ValueError, match="at least 4 rows"):
        QualityBootstrap("fd", 5, 0.95).replicates(ref, [a[:3]], [0.0])


def test_percentile_interval_and_clipping():
    iv = percentile_interval(torch.arange(101, dtype=torch.float64) - 50, 0.9, nonnegative=True)
    assert iv == Interval(0.0, 45.0)
    assert percentile_interval([1.0, 2.0, 3.0], 0.5).contains(2.0)


def _reps(values, spread, n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(v + spread * torch.randn(n, generator=g)).tolist() for v in values]


def test_speedup_interval_texts():
    nfe = [1, 2, 4, 8, 16, 32, 64]
    base, ledi = [100, 50, 30, 15, 8, 5, 4], [20, 10, 6, 4, 3, 2.5, 2.4]
    est = speedup_with_interval(nfe, ledi, _reps(ledi, 0.2), nfe, base, _reps(base, 0.2, seed=1), 64, 0.95)
    assert est.point.status == "reached" and est.point.speedup == pytest.approx(8.0)
    lo, hi = est.bounds()
    assert lo[0] < 8.0 < hi[0] and est.text().startswith("8.00x (95% CI ")
    flat = [3, 2, 2, 2, 2, 2, 2]
    floor = speedup_with_interval(nfe, flat, _reps(flat, 0.01), nfe, base, _reps(base, 0.01, seed=1), 64, 0.95)
    assert floor.text() == ">= 64.00x (at the grid's floor in 100% of resamples)"
    never = speedup_with_interval(nfe, [50.0] * 7, _reps([50.0] * 7, 0.01), nfe, base, _reps(base, 0.01, seed=1), 64, 0.95)
    assert never.text() == "not reached (reached in 0% of resamples)"


def test_compare_gives_wallclock_with_the_x0_overhead():
    nfe = [1, 2, 4, 8]
    ledi = Curve(nfe, [8.0, 4.0, 2.0, 1.0], [[8.0, 8.0]] * 4, [1.1, 2.1, 4.1, 8.1], [0.1] * 4)
    base = Curve(nfe, [16.0, 8.0, 4.0, 2.0], [[16.0, 16.0]] * 4, [1.0, 2.0, 4.0, 8.0], [0.0] * 4)
    cmp = compare(ledi, base, 8, 0.95)
    assert cmp.nfe.point.matched_nfe == pytest.approx(4.0) and cmp.nfe.point.speedup == pytest.approx(2.0)
    assert cmp.wallclock.baseline_seconds == 8.0 and cmp.wallclock.ledi_seconds == pytest.approx(4.1)
    assert cmp.wallclock.speedup == pytest.approx(8.0 / 4.1)
    assert "incl. 100 ms for x0" in cmp.wallclock.text()
    assert ledi.at(2 ** 1.5, ledi.seconds) == pytest.approx(3.1)  # halfway in log NFE between 2 and 4


def test_paired_difference_separates_signal_from_noise():
    shared = torch.randn(300, generator=torch.Generator().manual_seed(0))
    a = (5.0 + shared).tolist()
    b = (6.0 + shared + 0.05 * torch.randn(300, generator=torch.Generator().manual_seed(1))).tolist()
    assert paired_difference(a, b, 1.0, 0.95).low > 0  # paired: the shared noise cancels
    c = (5.0 + torch.randn(300, generator=torch.Generator().manual_seed(2))).tolist()
    iv = paired_difference(a, c, 0.0, 0.95)
    assert iv.low < 0 < iv.high


def test_reliability_warnings():
    floor = PointWithInterval("floor", 1.0, Interval(0.8, 1.2))
    ok = [PointWithInterval("m", 1.1, Interval(0.9, 1.3))]
    noise = PointWithInterval("noise", 50.0, Interval(45, 55))
    kwargs = dict(min_noise_to_floor=10.0, min_judge_accuracy=0.85, n_samples=200)
    assert reliability_warnings(ok, floor, noise, 0.9, **kwargs) == []
    beaten = [PointWithInterval("m", 0.5, Interval(0.4, 0.6))]
    (w,) = reliability_warnings(beaten, floor, noise, 0.9, **kwargs)
    assert "beat the real-vs-real floor" in w and "200 images" in w
    (w,) = reliability_warnings(ok, floor, PointWithInterval("noise", 5.0, Interval(4, 6)), 0.9, **kwargs)
    assert "noise row" in w
    (w,) = reliability_warnings(ok, floor, noise, 0.7, **kwargs)
    assert "accuracy 0.700" in w


def test_points_drawn_from_the_same_seeds_are_paired_on_the_generated_side_too():
    """Two settings that sample from the same noise (row i of each comes from the same seed) and differ by a
    systematic shift: with the generated halves shared row by row, the paired interval of their difference
    excludes 0; with the rows of one point shuffled (the pairing broken) the same difference is within the noise."""
    g = torch.Generator().manual_seed(6)
    ref = torch.randn(2000, 4, generator=g)
    common = torch.randn(400, 4, generator=g) * 1.3  # the seeds' noise, shared by both points
    a, b = common, common + 0.2
    points = [frechet_distance(a, ref), frechet_distance(b, ref)]
    reps = QualityBootstrap("fd", 200, 0.95).replicates(ref, [a, b], points)
    assert paired_difference(reps[0].tolist(), reps[1].tolist(), points[1] - points[0], 0.95).low > 0
    shuffled = b[torch.randperm(400, generator=torch.Generator().manual_seed(1))]
    reps = QualityBootstrap("fd", 200, 0.95).replicates(ref, [a, shuffled], points)
    iv = paired_difference(reps[0].tolist(), reps[1].tolist(), points[1] - points[0], 0.95)
    assert iv.low < 0 < iv.high

"""Statistics of the report: the tie rule and Wilson intervals."""

import pytest

from atalp_keras.reproduction import stats


def test_compare_calls_differences_within_one_std_a_tie():
    a = stats.Stat([0.60, 0.62, 0.64], 360)  # std 0.02
    assert stats.compare(a, stats.Stat([0.59, 0.61, 0.63], 360)) == 0
    assert stats.compare(a, stats.Stat([0.50, 0.51, 0.52], 360)) == 1
    assert stats.compare(stats.Stat([0.50, 0.51, 0.52], 360), a) == -1
    # One seed: the binomial standard error decides (~3.6 points at n=360).
    assert stats.compare(stats.Stat([0.60], 360), stats.Stat([0.58], 360)) == 0
    assert stats.compare(stats.Stat([0.60], 360), stats.Stat([0.50], 360)) == 1


def test_wilson_interval_matches_a_hand_computed_case():
    # p = 0.8, n = 100, z = 1.96: centre (0.8 + 0.0192) / 1.0384 = 0.78890,
    # half 1.96 * sqrt(0.0016 + 0.000096) / 1.0384 = 0.07773.
    low, high = stats.wilson_interval(0.8, 100, z=1.96)
    assert low == pytest.approx(0.71117, abs=1e-4)
    assert high == pytest.approx(0.86664, abs=1e-4)


def test_wilson_interval_agrees_with_scipy_and_stays_in_0_1():
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n in ((0, 50), (37, 50), (1000, 1000), (812, 1000)):
        ci = scipy_stats.binomtest(k, n).proportion_ci(method="wilson")
        low, high = stats.wilson_interval(k / n, n)
        assert low == pytest.approx(ci.low, abs=1e-9)
        assert high == pytest.approx(ci.high, abs=1e-9)
        assert 0.0 <= low <= k / n <= high <= 1.0


def test_cell_shows_mean_std_and_interval():
    assert stats.Stat([0.5, 0.7], 100).cell() == "60.0 ± 14.1"
    assert stats.Stat([0.8], 100).cell(interval=True) == "80.0 [71.1, 86.7]"
    assert stats.Stat([], 100).cell() == "-"

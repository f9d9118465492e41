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


def test_two_attacks_on_the_same_models_are_compared_at_the_sample_noise():
    # at_alp at eps 0.1 on Fashion-MNIST: gradient stages 75.2 +- 0.1, Square
    # 75.0 +- 0.1 over two seeds, n=1000. The seeds' spread (0.1 points) would
    # call the 0.2-point gap real; the combined binomial SE is
    # sqrt(.752*.248/1000 + .750*.250/1000) = 1.93 points: a tie.
    square = stats.Stat([0.749, 0.751], 1000)
    gradient = stats.Stat([0.751, 0.753], 1000)
    assert stats.compare(square, gradient) == -1
    assert stats.compare(square, gradient, within_model=True) == 0
    assert abs(stats.sample_tolerance(square, gradient) - 0.01932) < 1e-4
    # pat at eps 0.3: 47.0 against 54.1 (7.1 points > 2.2): beyond.
    assert stats.compare(stats.Stat([0.47], 1000), stats.Stat([0.541], 1000),
                         within_model=True) == -1

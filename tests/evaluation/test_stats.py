"""The exact binomial tail probabilities behind the audit's tests, against
numbers computed by hand and against scipy."""

import math

import numpy as np
import pytest

from atalp_keras.evaluation import stats


def test_binomial_tails_match_hand_computed_values():
    # n = 4, p = 1/2: P(X = k) = C(4, k) / 16 = 1, 4, 6, 4, 1 sixteenths.
    assert stats.binomial_cdf(0, 4, 0.5) == pytest.approx(1 / 16)
    assert stats.binomial_cdf(1, 4, 0.5) == pytest.approx(5 / 16)
    assert stats.binomial_sf(3, 4, 0.5) == pytest.approx(5 / 16)
    assert stats.binomial_sf(0, 4, 0.5) == 1.0
    # n = 10, p = 0.3: P(X <= 1) = 0.7^10 + 10 * 0.3 * 0.7^9 = 0.1493...
    assert stats.binomial_cdf(1, 10, 0.3) == pytest.approx(0.7 ** 10 + 3 * 0.7 ** 9)
    # Degenerate p: all mass at 0 or at n.
    assert stats.binomial_cdf(0, 5, 0.0) == 1.0 and stats.binomial_sf(1, 5, 0.0) == 0.0
    assert stats.binomial_cdf(4, 5, 1.0) == 0.0 and stats.binomial_sf(5, 5, 1.0) == 1.0


def test_binomial_tails_match_scipy_for_large_n():
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n, p in [(380, 1000, 0.4), (9000, 10000, 0.905), (3, 200, 0.05)]:
        assert stats.binomial_cdf(k, n, p) == pytest.approx(scipy_stats.binom.cdf(k, n, p),
                                                            rel=1e-9)
        assert stats.binomial_sf(k, n, p) == pytest.approx(scipy_stats.binom.sf(k - 1, n, p),
                                                           rel=1e-9)


def test_significance_depends_on_the_sample_size():
    # Three points of difference: noise on 100 points, real on 10,000.
    assert not stats.significantly_lower(0.37, 0.40, 100)
    assert stats.significantly_lower(0.37, 0.40, 10_000)
    assert not stats.significantly_higher(0.43, 0.40, 100)
    assert stats.significantly_higher(0.43, 0.40, 10_000)
    # On 100 points at 40%: 32 correct is P = 0.0615 (not significant), 31 is 0.0398.
    assert stats.binomial_cdf(32, 100, 0.4) == pytest.approx(0.0615, abs=5e-4)
    assert not stats.significantly_lower(0.32, 0.40, 100)
    assert stats.significantly_lower(0.31, 0.40, 100)
    assert math.isclose(stats.count(0.31, 100), 31)


def test_mcnemar_exact_by_hand():
    from atalp_keras.evaluation.stats import mcnemar_exact

    # 10 images: both right on 5, only A on 4, only B on 1, both wrong on 0.
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    b = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 1], bool)
    result = mcnemar_exact(a, b)
    assert (result["a_only"], result["b_only"], result["n"]) == (4, 1, 10)
    # P(X <= 1), X ~ Bin(5, 1/2) = (1 + 5) / 32; two-sided: 12/32.
    assert result["p_value"] == pytest.approx(12 / 32)
    assert result["difference"] == pytest.approx(0.3)
    # Agreeing models: p = 1; the discordant split alone matters, not the
    # images both get right.
    assert mcnemar_exact(a, a)["p_value"] == 1.0
    many = mcnemar_exact(np.r_[a, np.ones(1000, bool)], np.r_[b, np.ones(1000, bool)])
    assert many["p_value"] == pytest.approx(12 / 32)
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact(a, b[:5])


def test_records_hold_the_per_image_results():
    from atalp_keras.evaluation.run import _record
    from atalp_keras.evaluation.stats import parse_correct

    correct = np.array([True, False, True, True])
    record = _record({}, "pgd", 0.1, 4, correct, 1.0)
    assert record["correct"] == "1011" and record["accuracy"] == 0.75
    np.testing.assert_array_equal(parse_correct(record), correct)

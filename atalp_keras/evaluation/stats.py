"""Accuracy statistics at the evaluation's sample size: the Wilson 95%
interval of an accuracy, and exact binomial tail probabilities for telling a
real accuracy difference from sampling noise.

For ``X ~ Binomial(n, p)``:

    P(X = k)  = C(n, k) p^k (1 - p)^(n - k)
    P(X <= k) = sum_{i=0..k} P(X = i),      P(X >= k) = sum_{i=k..n} P(X = i)

computed in log space (``log C(n, k) = lgamma(n+1) - lgamma(k+1) - lgamma(n-k+1)``)
so that n in the tens of thousands does not underflow term by term.
"""

import math

import numpy as np


def binomial_pmf(n, p):
    """``P(X = k)`` for ``k = 0..n`` (numpy array of ``n + 1`` floats)."""
    n = int(n)
    k = np.arange(n + 1)
    if p <= 0.0:
        return (k == 0).astype(float)
    if p >= 1.0:
        return (k == n).astype(float)
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                           for i in k])
    return np.exp(log_choose + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_cdf(k, n, p):
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``."""
    if k < 0:
        return 0.0
    return float(min(binomial_pmf(n, p)[:int(k) + 1].sum(), 1.0))


def binomial_sf(k, n, p):
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``."""
    if k <= 0:
        return 1.0
    return float(min(binomial_pmf(n, p)[int(k):].sum(), 1.0))


def count(accuracy, n):
    """The number of correct points behind an accuracy measured on ``n``."""
    return int(round(float(accuracy) * int(n)))


def significantly_lower(accuracy, reference, n, alpha=0.05):
    """One-sided exact binomial test: is ``accuracy`` (measured on ``n``
    points) below ``reference`` by more than sampling noise?

    The null hypothesis is that the number of correct points is
    ``Binomial(n, reference)``; it is rejected when ``P(X <= observed) < alpha``.
    """
    return binomial_cdf(count(accuracy, n), n, float(reference)) < alpha


def significantly_higher(accuracy, reference, n, alpha=0.05):
    """The other tail: ``P(X >= observed) < alpha`` under ``Binomial(n, reference)``."""
    return binomial_sf(count(accuracy, n), n, float(reference)) < alpha


Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(accuracy, n, z=Z95):
    """The Wilson score interval ``(low, high)`` of a proportion.

    Args:
        accuracy: Observed fraction of successes in [0, 1].
        n: Number of trials (test images); 0 gives ``(0, 1)``.
        z: Normal quantile (default: 95% two-sided).
    """
    if n <= 0:
        return 0.0, 1.0
    p = min(max(float(accuracy), 0.0), 1.0)
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # The interval always holds p (exactly, at p = 0 or 1, despite rounding).
    return min(max(0.0, centre - half), p), max(min(1.0, centre + half), p)


def parse_correct(record):
    """The per-image results of an evaluation record (its ``"correct"``
    string) as a bool array."""
    return np.frombuffer(record["correct"].encode("ascii"), np.uint8) == ord("1")


def mcnemar_exact(correct_a, correct_b):
    """McNemar's exact test of two models on the same images.

    Only the discordant images count: ``b`` robust for A and not for B,
    ``c`` the reverse. Under the null (the models are equally accurate) each
    discordant image goes either way with probability 1/2, so ``min(b, c)``
    is ``Binomial(b + c, 1/2)``; the two-sided p-value is twice its tail,
    at most 1.

    Returns:
        ``{"n", "a_only", "b_only", "p_value", "difference"}`` with the
        accuracy difference A - B in [-1, 1].
    """
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError("McNemar's test pairs the same images: got "
                         f"{correct_a.shape} and {correct_b.shape} results")
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p_value = 1.0 if b + c == 0 else min(1.0, 2.0 * binomial_cdf(min(b, c), b + c, 0.5))
    return {"n": int(correct_a.size), "a_only": b, "b_only": c, "p_value": p_value,
            "difference": (b - c) / max(int(correct_a.size), 1)}


def format_interval(accuracy, n):
    """``'[low, high]'`` in percent, one decimal: the Wilson 95% interval."""
    low, high = wilson_interval(accuracy, n)
    return f"[{100 * low:.1f}, {100 * high:.1f}]"

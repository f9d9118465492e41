"""Accuracy statistics of the report: Wilson 95% intervals, mean ± std over
seeds, and the rule that calls two accuracies different or tied."""

import dataclasses
import math

import numpy as np

# The interval lives with the evaluation's other statistics (evaluate.py's
# tables use it too).
from atalp_keras.evaluation.stats import format_interval, wilson_interval


@dataclasses.dataclass
class Stat:
    """Accuracy over seeds: ``mean``/``std`` are fractions; ``std`` is None
    for a single seed; ``n`` is the number of test images behind each value."""

    values: list
    n: int

    @property
    def mean(self):
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def std(self):
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None

    @property
    def k(self):
        return len(self.values)

    def binomial_se(self):
        p = min(max(self.mean, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / max(self.n, 1))

    def interval(self):
        """Wilson 95% interval of the mean at this sample size."""
        return wilson_interval(self.mean, self.n)

    def cell(self, interval=False):
        """``81.2``, ``81.2 ± 0.4``; with ``interval`` also ``[78.7, 83.5]``."""
        if not self.values:
            return "-"
        text = f"{100 * self.mean:.1f}"
        if self.std is not None:
            text += f" ± {100 * self.std:.1f}"
        if interval:
            text += " " + format_interval(self.mean, self.n)
        return text


def tolerance(a, b):
    """The difference below which two accuracies are called a tie.

    With several seeds: the larger of the two standard deviations over seeds.
    With one seed: the combined binomial standard error of the two test-set
    estimates. Never below one test image (1/n).
    """
    floor = 1.0 / max(a.n, b.n, 1)
    if a.k >= 2 and b.k >= 2:
        return max(a.std, b.std, floor)
    return max(math.sqrt(a.binomial_se() ** 2 + b.binomial_se() ** 2), floor)


def sample_tolerance(a, b):
    """The tie band of two attacks on the SAME models: the combined binomial
    standard error at the test sample (never below one test image). The spread
    over seeds says nothing here: two attacks' numbers move together from seed
    to seed, so a small spread would call a gap of two images real."""
    return max(math.sqrt(a.binomial_se() ** 2 + b.binomial_se() ** 2),
               1.0 / max(a.n, b.n, 1))


def compare(a, b, within_model=False):
    """+1 if ``a`` beats ``b`` by more than `tolerance` (`sample_tolerance`
    with ``within_model``: two attacks on the same models), -1 if it trails,
    else 0."""
    if not a.values or not b.values:
        return 0
    diff = a.mean - b.mean
    band = sample_tolerance(a, b) if within_model else tolerance(a, b)
    if abs(diff) <= band + 1e-12:
        return 0
    return 1 if diff > 0 else -1


def points(a, b):
    return f"{100 * (a.mean - b.mean):+.1f} points"


def seconds_cell(values):
    """Mean ± std of a list of seconds (None entries skipped)."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"

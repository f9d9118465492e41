"""What the per-attack test files share: the digits points they attack, and
the checks every adversarial batch must pass (in the eps-ball, in [0, 1])."""

import numpy as np
import pytest

EPS = 0.1
N = 150


def first_test_points(digits, n):
    """The first ``n`` real test digits: ``(x, y)``."""
    _, _, x_test, y_test = digits
    return x_test[:n], y_test[:n]


@pytest.fixture(scope="module")
def points(digits):
    return first_test_points(digits, N)


def correct(model, x, y):
    return np.argmax(model.predict(x, verbose=0), axis=-1) == y


def assert_valid(x_adv, x, eps):
    x_adv = np.asarray(x_adv)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.abs(x_adv - x).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0

"""What the per-attack test files share: the digits points they attack, the
small budgets the contract tests build attacks with, the checks every
adversarial batch must pass (in the eps-ball, in [0, 1]), and the bad inputs
every attack refuses in one line.

Backend-neutral (no TensorFlow): tests/jax_backend/test_attacks_jax.py imports it too.
"""

import inspect

import numpy as np
import pytest

from atalp_keras.attacks import ATTACKS, get_attack

EPS = 0.1
N = 150
# Small budgets per option name; each attack gets those its constructor takes.
SMALL = dict(num_steps=5, n_target_classes=3, n_queries=200)


def small(name, eps=EPS, **kwargs):
    """The registered attack ``name`` with the `SMALL` budgets it takes
    (FGSM keeps its one step); ``kwargs`` override them."""
    params = inspect.signature(ATTACKS[name].__init__).parameters
    options = {k: v for k, v in SMALL.items() if k in params}
    if name == "fgsm":
        options.pop("num_steps", None)
    return get_attack(name, eps=eps, **{**options, **kwargs})


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


# Bad inputs every attack refuses: (name, the error's fragment).
BAD_INPUTS = [
    ("0-255", "divide by 255"),
    ("nan", "NaN"),
    ("one-hot", "One-hot labels"),
    ("label-range", r"in \[0, 10\)"),
]


def assert_bad_input_refused(name, mistake, fragment, model, points):
    """``perturb`` and ``run`` of attack ``name`` refuse the `BAD_INPUTS`
    case ``mistake`` with one line that quotes no array."""
    from atalp_keras.errors import UsageError

    x, y = points[0][:6].copy(), points[1][:6].copy()
    if mistake == "0-255":
        x = x * 255
    elif mistake == "nan":
        x[0, 0, 0, 0] = np.nan
    elif mistake == "one-hot":
        y = np.eye(10, dtype="float32")[y]
    else:
        y[0] = 12
    for entry in ("perturb", "run"):
        with pytest.raises(UsageError, match=fragment) as error:
            getattr(small(name, seed=0), entry)(model, x, y)
        message = str(error.value)
        assert "\n" not in message and "[[" not in message and "array(" not in message

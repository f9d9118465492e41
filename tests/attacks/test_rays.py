"""RayS: label-only access, boundary distances, and the exact distance of a
linear rule."""

import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.attacks import RaySAttack
from atalp_keras.attacks.rays import LabelOracle, rays_search

from attack_checks import EPS, N, assert_valid, correct, points  # noqa: F401 (a fixture)


class LabelsOnly:
    """A model that exposes nothing but its predicted class (as a scaled,
    shifted one-hot vector, different at every call)."""

    def __init__(self, model):
        self.model = model
        self.calls = 0

    def __call__(self, x, training=False):
        self.calls += 1
        logits = self.model(x, training=training)
        onehot = tf.one_hot(tf.argmax(logits, axis=-1), logits.shape[-1])
        scale = tf.random.uniform((tf.shape(x)[0], 1), 1.0, 5.0)
        return onehot * scale + tf.random.normal((tf.shape(x)[0], 1))


def test_rays_uses_labels_only_and_reports_boundary_distances(undefended_model, points):
    x, y = points
    budget = 800
    attack = RaySAttack(EPS, n_queries=budget)
    result = attack.run(undefended_model, x, y)
    x_adv = result.x_adv
    # Label-only: a model that returns nothing but the label gives identical
    # results, distances and query counts.
    labels_only = LabelsOnly(undefended_model)
    blind = RaySAttack(EPS, n_queries=budget).run(labels_only, x, y)
    np.testing.assert_array_equal(blind.x_adv, x_adv)
    assert labels_only.calls >= 1
    np.testing.assert_array_equal(blind.extras["distances"], result.extras["distances"])
    np.testing.assert_array_equal(blind.extras["queries"], result.extras["queries"])

    assert_valid(x_adv, x, EPS)
    clean = correct(undefended_model, x, y)
    robust = correct(undefended_model, x_adv, y)
    assert robust.mean() <= 0.2 and clean.mean() - robust.mean() >= 0.7
    distances = result.extras["distances"]
    assert np.all(distances[~clean] == 0.0)
    assert np.all((distances[clean] > 0.0) & (distances[clean] <= 1.0))
    broken = clean & ~robust
    np.testing.assert_array_equal(result.success, broken)
    assert np.all(distances[broken] <= EPS)
    assert np.all(distances[clean & robust] > EPS)
    assert result.extras["mean_distance"] == pytest.approx(distances[clean].mean())
    queries = result.extras["queries"]
    assert queries.max() <= budget and queries.min() >= 1


class LinearOracle:
    """Hard labels of a linear two-class rule ``[w.x + b > 0]``, in numpy."""

    def __init__(self, w, b, n):
        self.w, self.b = w, b
        self.queries = np.zeros(n, np.int64)

    def __call__(self, x, index):
        np.add.at(self.queries, index, 1)
        return (x.reshape(len(x), -1) @ self.w + self.b > 0).astype(np.int32)


def test_rays_search_finds_the_exact_linf_distance_of_a_linear_rule():
    """For ``w.x + b`` the L-inf distance to the boundary is
    ``|w.x + b| / |w|_1`` (along ``sign(w)``); RayS can never beat it (every
    radius it reports was checked to be adversarial) and its block search
    should reach it. D = 37 is not a power of two (uneven blocks)."""
    rng = np.random.default_rng(0)
    dim, n = 37, 12
    w = rng.normal(size=dim)
    b = -0.5 * w.sum()                                     # boundary through the centre
    x_raw = rng.uniform(0.45, 0.55, (n, dim))
    target = rng.uniform(0.05, 0.3, n)                     # wanted distances
    shift = (x_raw - 0.5) @ w / np.abs(w).sum() + target
    x = (x_raw - shift[:, None] * np.sign(w)).astype(np.float32)   # inside [0.1, 0.9]
    oracle = LinearOracle(w, b, n)
    exact = np.abs(x @ w + b) / np.abs(w).sum()
    np.testing.assert_allclose(exact, target, atol=1e-5)
    y = oracle(x, np.arange(n))
    assert np.all(y == 0)
    oracle.queries[:] = 0
    radius, direction = rays_search(oracle, x, y, eps=0.01, n_queries=3000, tol=1e-5)
    assert oracle.queries.max() <= 3000
    reached = np.isfinite(radius)
    assert reached.all()
    assert np.all(radius >= exact - 2e-5)
    np.testing.assert_allclose(radius, exact, atol=1e-3)
    assert np.mean(direction == np.sign(w)) > 0.95          # it found the direction too


def test_label_oracle_returns_labels_and_counts(undefended_model, points):
    x, _ = points
    oracle = LabelOracle(undefended_model, x.shape[1:], num_examples=5)
    labels = oracle(x[:3], np.array([0, 0, 4]))
    assert labels.dtype == np.int32 and labels.shape == (3,)
    np.testing.assert_array_equal(labels, np.argmax(undefended_model.predict(x[:3], verbose=0), -1))
    np.testing.assert_array_equal(oracle.queries, [2, 0, 0, 0, 1])

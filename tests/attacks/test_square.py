"""Square: score-based (no gradients), query counting, keyed randomness."""

import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.attacks import APGDAttack, SquareAttack

from attack_checks import EPS, N, assert_valid, correct, points  # noqa: F401 (a fixture)


class NoGradients:
    """Forwards to a model but raises if anyone takes a gradient through it."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training=False):
        @tf.custom_gradient
        def forward(inputs):
            def grad(upstream, variables=None):
                raise RuntimeError("a gradient was requested from a score-based attack")
            return self.model(inputs, training=training), grad
        return forward(x)


def test_square_is_score_based_counts_queries_and_breaks(undefended_model, points):
    x, y = points
    budget = 300
    attack = SquareAttack(EPS, n_queries=budget, seed=0)
    result = attack.run(NoGradients(undefended_model), x, y)
    x_adv = result.x_adv
    assert_valid(x_adv, x, EPS)
    with pytest.raises(RuntimeError, match="gradient was requested"):  # the wrapper works
        APGDAttack(EPS, num_steps=2).perturb(NoGradients(undefended_model), x[:4], y[:4])
    clean = correct(undefended_model, x, y)
    robust = correct(undefended_model, x_adv, y)
    assert robust.mean() <= 0.2 and clean.mean() - robust.mean() >= 0.7
    queries = result.extras["queries"]
    assert queries.shape == (N,) and queries.max() <= budget
    assert np.all(queries[~clean] == 1)                 # only the clean prediction
    assert np.all(queries[clean & robust] == budget)    # unbroken: the whole budget
    broken = clean & ~robust
    assert np.all((queries[broken] >= 2) & (queries[broken] < budget))
    np.testing.assert_array_equal(result.success, broken)
    # Keyed randomness: same seed, same result, whatever the batch size.
    again = SquareAttack(EPS, n_queries=budget, seed=0).perturb(undefended_model, x, y,
                                                                batch_size=7)
    np.testing.assert_array_equal(x_adv, again)

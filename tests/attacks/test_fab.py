"""FAB-T: the exact L-inf hyperplane projection and breaking within eps."""

import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.attacks import FABAttack
from atalp_keras.attacks.fab import project_linf_hyperplane

from attack_checks import EPS, N, assert_valid, correct, points  # noqa: F401 (a fixture)


def test_fab_projection_is_the_exact_linf_minimiser():
    from scipy.optimize import linprog

    rng = np.random.default_rng(0)
    dim = 6
    for _ in range(6):
        x = rng.uniform(0, 1, (1, dim)).astype(np.float32)
        w = rng.normal(size=(1, dim)).astype(np.float32)
        g = rng.normal(size=(1,)).astype(np.float32)
        d = np.asarray(project_linf_hyperplane(x, w, g))[0]
        assert np.all(x[0] + d >= -1e-6) and np.all(x[0] + d <= 1 + 1e-6)
        # LP over (d, t): min t, |d_i| <= t, box, <w, d> = -g.
        a_ub = np.vstack([np.c_[np.eye(dim), -np.ones(dim)], np.c_[-np.eye(dim), -np.ones(dim)]])
        lp = linprog(np.r_[np.zeros(dim), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * dim),
                     A_eq=np.r_[w[0], 0.0][None], b_eq=-g,
                     bounds=[(-v, 1 - v) for v in x[0]] + [(0, None)])
        if lp.status == 0:  # feasible: on the hyperplane with the LP's norm
            assert abs(g[0] + w[0] @ d) < 1e-4
            assert abs(np.abs(d).max() - lp.fun) < 1e-5
        else:  # infeasible: as far towards it as the box allows
            assert lp.status == 2
            assert np.all(np.isclose(np.abs(d), np.where(np.sign(w[0] * -g[0]) > 0,
                                                         1 - x[0], x[0]), atol=1e-6))


def test_fab_breaks_within_eps_and_leaves_the_rest_unchanged(undefended_model, points):
    x, y = points
    attack = FABAttack(EPS, num_steps=20, n_target_classes=3, seed=0)
    result = attack.run(undefended_model, x, y)
    x_adv = result.x_adv
    assert_valid(x_adv, x, EPS)
    robust = correct(undefended_model, x_adv, y)
    assert robust.mean() <= 0.2
    broken = result.success
    assert np.all(~robust[broken])
    np.testing.assert_array_equal(x_adv[~broken], x[~broken])

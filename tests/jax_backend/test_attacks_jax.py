"""The attack contract under ``KERAS_BACKEND=jax``: what
tests/attacks/test_attack_contract.py and test_autoattack_resume.py check on
TensorFlow, on the same digits points and the same undefended model (the
``undefended_model`` fixture, trained by Keras' own ``fit``, here on JAX).

Budgets are the TensorFlow tests' small ones (`attack_checks.small`) on 32
points; most of the time is XLA compiling each attack once.
"""

import sys
from pathlib import Path

import jax
import keras
import numpy as np
import pytest

from atalp_keras import backend
from atalp_keras.attacks import ATTACKS, AutoAttack, PGDAttack
from atalp_keras.attacks.square import SquareAttack
from atalp_keras.errors import UsageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attacks"))
from attack_checks import (BAD_INPUTS, EPS, assert_bad_input_refused, assert_valid,  # noqa: E402
                           correct, first_test_points, small)

N = 32
# AutoAttack runs with a resume file below; "autoattack-fast" is APGD-CE then
# APGD-T, both checked alone, and would only compile them a second time.
CONTRACT = sorted(set(ATTACKS) - {"autoattack", "autoattack-fast"})
EXTRA = {"pgd": dict(restarts=2)}


@pytest.fixture(scope="module")
def points(digits):
    return first_test_points(digits, N)


def test_the_backend_is_jax():
    assert keras.backend.backend() == "jax" and backend.NAME == "jax"


@pytest.mark.parametrize("name", CONTRACT)
def test_attack_contract(name, undefended_model, points):
    x, y = points
    result = small(name, seed=0, **EXTRA.get(name, {})).run(undefended_model, x, y)
    assert_valid(result.x_adv, x, EPS)
    clean, robust = correct(undefended_model, x, y), correct(undefended_model, result.x_adv, y)
    assert robust.mean() < clean.mean() - 0.3
    assert result.success.shape == (N,) and result.success.dtype == bool
    np.testing.assert_array_equal(result.success, clean & ~robust)


def test_round_attacks_key_each_example_not_the_batch(undefended_model, points):
    # On JAX a short batch is padded with copies of its last example: the
    # result of each real example must still be the one it gets alone.
    x, y = points
    attack = small("apgd-t", seed=1)
    whole = attack.perturb(undefended_model, x, y, batch_size=N)
    attack.restart_randomness()  # as freshly built (and no second compile of each shape)
    pieces = attack.perturb(undefended_model, x, y, batch_size=5)
    np.testing.assert_array_equal(pieces, whole)


def test_seeded_attacks_repeat(undefended_model, points):
    x, y = points
    attack = small("square", seed=3)
    first = attack.perturb(undefended_model, x, y)
    attack.restart_randomness()
    np.testing.assert_array_equal(attack.perturb(undefended_model, x, y), first)


@pytest.mark.parametrize("name", ["pgd", "apgd-t", "fab-t", "rays"])
def test_in_graph_attacks_trace_under_jit_and_eager_ones_refuse(name, undefended_model,
                                                                  points):
    x, y = points[0][:8], points[1][:8]
    attack = small(name, seed=0, **({} if name == "rays" else {"num_steps": 2}))
    run = backend.compiled(lambda xb, yb: attack(undefended_model, xb, yb), None,
                           stateful=lambda: (undefended_model, attack.seed_generator))
    if attack.in_graph:
        assert_valid(np.asarray(run(x, y)), x, EPS)
    else:
        with pytest.raises(UsageError, match="runs only eagerly"):
            run(x, y)


def test_a_bare_jit_of_a_random_start_is_refused_and_leaves_the_attack_usable(
        undefended_model, points):
    x, y = points[0][:8], points[1][:8]
    attack = PGDAttack(EPS, num_steps=2, seed=0)
    with pytest.raises(UsageError, match="StatelessScope"):
        jax.jit(lambda xb, yb: attack(undefended_model, xb, yb))(x, y)
    assert_valid(np.asarray(attack(undefended_model, x, y)), x, EPS)
    # Without random numbers there is no state to advance: a bare jit works.
    fixed = PGDAttack(EPS, num_steps=2, random_start=False)
    traced = jax.jit(lambda xb, yb: fixed(undefended_model, xb, yb))(x, y)
    np.testing.assert_allclose(np.asarray(traced), fixed.perturb(undefended_model, x, y),
                               atol=1e-6)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_eps_on_the_0_255_scale_is_refused(name):
    with pytest.raises(UsageError, match=r"did you mean eps=8/255"):
        small(name, eps=8)


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("mistake, fragment", BAD_INPUTS)
def test_bad_inputs_are_refused_in_one_line(name, mistake, fragment, undefended_model, points):
    assert_bad_input_refused(name, mistake, fragment, undefended_model, points)


class Killed(Exception):
    pass


def test_autoattack_standard_resumes_after_its_last_finished_stage(
        undefended_model, points, tmp_path, monkeypatch, capsys):
    x, y = points
    path = tmp_path / "aa_state.npz"
    # One object for all three calls: its components compile once.
    attack = AutoAttack(EPS, num_steps=5, n_target_classes=3, n_queries=100, seed=0,
                        resume_file=path)
    whole = attack.run(undefended_model, x, y)
    assert_valid(whole.x_adv, x, EPS)
    report = whole.extras["report"]
    assert [r["component"] for r in report] == ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    clean = correct(undefended_model, x, y)
    assert report[-1]["robust_accuracy"] < clean.mean() - 0.3
    np.testing.assert_array_equal(~whole.extras["robust"],
                                  ~correct(undefended_model, whole.x_adv, y))

    def killed(*args, **kwargs):
        raise Killed()

    # Killed in stage 4 (Square): stages 1-3 are on disk.
    path.unlink()
    original = SquareAttack._generate
    monkeypatch.setattr(SquareAttack, "_generate", killed)
    with pytest.raises(Killed):
        attack.run(undefended_model, x, y)
    monkeypatch.setattr(SquareAttack, "_generate", original)
    # The rerun runs only Square (the other components would raise).
    for component in attack.components()[:3]:
        monkeypatch.setattr(type(component), "_generate", killed)
    resumed = attack.run(undefended_model, x, y, verbose=1)
    assert "resuming after stage 3" in capsys.readouterr().err
    np.testing.assert_array_equal(resumed.x_adv, whole.x_adv)
    np.testing.assert_array_equal(resumed.success, whole.success)
    assert resumed.extras["broken_by"] == whole.extras["broken_by"]

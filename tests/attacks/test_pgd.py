"""PGD, FGSM and the TRADES attack: bounds, strength, seeding, and a
cross-check against an independent plain-TensorFlow PGD."""

import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.attacks import FGSMAttack, PGDAttack, TRADESAttack, get_attack
from atalp_keras import losses
from conftest import accuracy

N = 120


def _points(digits):
    _, _, x_test, y_test = digits
    return x_test[:N], y_test[:N]


def _check_bounds(x_adv, x, eps):
    assert x_adv.shape == x.shape
    assert np.max(np.abs(x_adv - x)) <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def _mean_ce(model, x, y):
    return float(np.mean(losses.cross_entropy(y, model(x, training=False))))


@pytest.mark.parametrize("attack", [
    PGDAttack(0.1, 0.025, 5, seed=1),
    PGDAttack(0.1, 0.05, 3, restarts=2, seed=1),
    FGSMAttack(0.1),
    FGSMAttack(0.1, step_size=0.125, random_start=True, seed=1),
    TRADESAttack(0.1, 0.025, 3, seed=1),
], ids=["pgd", "pgd-restarts", "fgsm", "fgsm-rs", "trades"])
def test_attack_stays_in_ball_and_box_and_raises_loss(attack, digits, undefended_model):
    x, y = _points(digits)
    x_adv = attack.perturb(undefended_model, x, y, batch_size=50)
    _check_bounds(x_adv, x, attack.eps)
    assert _mean_ce(undefended_model, x_adv, y) > _mean_ce(undefended_model, x, y) + 0.1


def test_pgd_breaks_undefended_model_and_fgsm_does_less(digits, undefended_model):
    x, y = _points(digits)
    clean = accuracy(undefended_model, x, y)
    pgd = accuracy(undefended_model, PGDAttack(0.1, 0.025, 10, seed=0).perturb(
        undefended_model, x, y), y)
    fgsm = accuracy(undefended_model, FGSMAttack(0.1).perturb(undefended_model, x, y), y)
    assert clean > 0.85
    assert pgd < 0.3
    assert pgd < fgsm < clean


def test_restarts_never_weaker_than_one_run(digits, undefended_model):
    x, y = _points(digits)
    one = PGDAttack(0.05, 0.0125, 3, seed=7).perturb(undefended_model, x, y)
    many = PGDAttack(0.05, 0.0125, 3, restarts=4, seed=7).perturb(undefended_model, x, y)
    pred_one = np.argmax(undefended_model.predict(one, verbose=0), -1)
    pred_many = np.argmax(undefended_model.predict(many, verbose=0), -1)
    broken_one, broken_many = pred_one != y, pred_many != y
    # Same seed, so restart 0 is the single run: every point it breaks stays broken.
    assert np.all(broken_many[broken_one])
    assert broken_many.sum() >= broken_one.sum()


def test_random_start_differs_between_calls(digits, undefended_model):
    x, y = _points(digits)
    attack = PGDAttack(0.1, 0.01, 1, seed=3)
    first = attack.perturb(undefended_model, x, y)
    second = attack.perturb(undefended_model, x, y)
    assert np.mean(first != second) > 0.5


def test_pgd_matches_independent_plain_tf_loop(digits, undefended_model):
    x, y = _points(digits)
    eps, step, steps = 0.1, 0.02, 4
    ours = PGDAttack(eps, step, steps, random_start=False).perturb(undefended_model, x, y)
    ref = tf.constant(x)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(ref)
            loss = tf.keras.losses.sparse_categorical_crossentropy(
                y, undefended_model(ref, training=False), from_logits=True)
        ref = ref + step * tf.sign(tape.gradient(loss, ref))
        ref = tf.clip_by_value(tf.clip_by_value(ref, x - eps, x + eps), 0.0, 1.0)
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-6)


def test_targeted_pgd_reaches_targets(digits, undefended_model):
    x, y = _points(digits)
    target = (y + 1) % 10
    x_adv = PGDAttack(0.2, 0.02, 20, targeted=True, seed=0).perturb(undefended_model, x, target)
    _check_bounds(x_adv, x, 0.2)
    hit = np.argmax(undefended_model.predict(x_adv, verbose=0), -1) == target
    assert hit.mean() > 0.7


def test_attack_calls_model_in_inference_mode(digits):
    import keras

    seen = []

    class Recorder(keras.layers.Layer):
        def call(self, x, training=None):
            seen.append(training)
            return x

    inputs = keras.Input((8, 8, 1))
    h = Recorder()(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    x, y = _points(digits)
    seen.clear()
    for attack in [PGDAttack(0.1, 0.05, 2, restarts=2), FGSMAttack(0.1), TRADESAttack(0.1, 0.05, 2)]:
        attack.perturb(model, x[:8], y[:8])
    assert seen and all(flag is False for flag in seen)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"eps": 8}, "0-255"),
    ({"eps": 8}, "8/255"),
    ({"eps": 0.0}, "(0, 1]"),
    ({"eps": float("nan")}, "nan"),
    ({"eps": 0.1, "step_size": 2}, "step_size=2"),
    ({"eps": 0.1, "num_steps": 0}, "num_steps=0"),
    ({"eps": 0.1, "restarts": 1.5}, "restarts=1.5"),
])
def test_bad_attack_arguments_are_refused_clearly(kwargs, fragment):
    with pytest.raises(ValueError) as err:
        PGDAttack(**kwargs)
    assert fragment in str(err.value)


def test_get_attack_lists_known_names():
    with pytest.raises(ValueError, match="Expected one of: .*pgd"):
        get_attack("pgdd", eps=0.1)
    assert isinstance(get_attack("fgsm", eps=0.1), FGSMAttack)


def test_attacks_survive_a_model_without_gradient_path(digits, undefended_model):
    """A non-differentiable op gives no gradient: attacks must treat it as zero
    (the audit reports it) rather than crash."""
    import keras

    from atalp_keras.attacks import APGDAttack

    inputs = keras.Input((8, 8, 1))
    rounded = keras.layers.Lambda(lambda t: keras.ops.round(t * 3.0) / 3.0)(inputs)
    model = keras.Model(inputs, undefended_model(rounded))
    x, y = _points(digits)
    for attack in [PGDAttack(0.1, 0.025, 3, seed=0), FGSMAttack(0.1),
                   APGDAttack(0.1, num_steps=5, seed=0)]:
        x_adv = attack.perturb(model, x[:20], y[:20])
        _check_bounds(x_adv, x[:20], 0.1)

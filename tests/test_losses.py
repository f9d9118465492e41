"""Every formula of METHOD.md against a case computed by hand."""

import math

import numpy as np
import pytest

from atalp_keras import attention, losses


def test_attention_map_hand_computed():
    # One 2x2 map with two channels: Q = sum_c |A|^2.
    a = np.array([[[[1.0, 0.0], [2.0, 1.0]], [[0.0, 3.0], [-4.0, 0.0]]]], "float32")
    q = np.array([1.0, 5.0, 9.0, 16.0])  # 1+0, 4+1, 0+9, 16+0
    expected = q / math.sqrt(1 + 25 + 81 + 256)
    got = np.asarray(attention.attention_map(a))
    np.testing.assert_allclose(got, expected[None], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-6)


def test_attention_map_of_zeros_is_zero_not_nan():
    got = np.asarray(attention.attention_map(np.zeros((2, 3, 3, 4), "float32")))
    assert np.all(got == 0)


def test_attention_pairing_loss_hand_computed():
    nat = np.zeros((1, 2, 2, 1), "float32")
    adv = np.zeros((1, 2, 2, 1), "float32")
    nat[0, 0, 0, 0] = 3.0  # q_hat = (1, 0, 0, 0)
    adv[0, 0, 1, 0] = 0.5  # q_hat = (0, 1, 0, 0)
    same = np.ones((1, 2, 2, 3), "float32")
    got = np.asarray(attention.attention_pairing_loss([nat, same], [adv, same]))
    # ||(1, -1, 0, 0)||_2 from the first stage, 0 from the identical second one.
    np.testing.assert_allclose(got, [math.sqrt(2.0)], rtol=1e-6)


def test_attention_pairing_loss_zero_for_identical_and_scale_invariant():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 4, 5)).astype("float32")
    b = rng.normal(size=(3, 4, 4, 5)).astype("float32")
    np.testing.assert_array_equal(attention.attention_pairing_loss([a], [a]), np.zeros(3))
    base = np.asarray(attention.attention_pairing_loss([a], [b]))
    scaled = np.asarray(attention.attention_pairing_loss([7.0 * a], [0.25 * b]))
    np.testing.assert_allclose(scaled, base, rtol=1e-5)
    assert np.all(base > 0)


def test_attention_pairing_gradient_is_finite_at_zero_difference():
    import tensorflow as tf

    a = tf.Variable(np.ones((2, 2, 2, 3), "float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(attention.attention_pairing_loss([a], [tf.identity(a)]))
    grad = tape.gradient(loss, a)
    assert np.all(np.isfinite(grad.numpy()))


def test_alp_hand_computed():
    got = np.asarray(losses.alp_loss(np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 0.0, 0.0]])))
    np.testing.assert_allclose(got, [13.0 / 3.0], rtol=1e-6)  # (0 + 4 + 9) / 3


def test_trades_kl_hand_computed():
    nat = np.array([[0.0, 0.0, 0.0]])
    adv = np.array([[math.log(2.0), 0.0, 0.0]])  # softmax = (1/2, 1/4, 1/4)
    expected = (math.log((1 / 3) / (1 / 2)) + 2 * math.log((1 / 3) / (1 / 4))) / 3
    np.testing.assert_allclose(np.asarray(losses.trades_kl(nat, adv)), [expected], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(losses.trades_kl(adv, adv)), [0.0], atol=1e-7)


def test_cross_entropy_hand_computed():
    logits = np.array([[0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0]])
    got = np.asarray(losses.cross_entropy(np.array([2, 0]), logits))
    # Uniform: ln 3. Second row: p(0) = 3/5.
    np.testing.assert_allclose(got, [math.log(3.0), -math.log(3 / 5)], rtol=1e-6)


def test_attention_loss_rejects_mismatched_stage_lists():
    a = np.ones((1, 2, 2, 1), "float32")
    with pytest.raises(ValueError, match="differ in length"):
        attention.attention_pairing_loss([a, a], [a])

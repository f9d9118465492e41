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


def test_mart_terms_match_a_hand_computed_case():
    """MART (Wang et al. 2020) on one example, y = 0:
    p_adv = softmax(1, 2, 0) = (0.2447, 0.6652, 0.0900),
    p_nat = softmax(2, 0, 0) = (0.7870, 0.1065, 0.1065).
    BCE = -log 0.2447 - log(1.0001 - 0.6652) = 1.4076 + 1.0939 = 2.5015;
    KL(p_nat || p_adv) = 0.9194 - 0.1951 + 0.0179 = 0.7422, times
    (1.0000001 - 0.7870) = 0.2130 gives 0.1581."""
    from atalp_keras import losses

    y = np.array([0])
    logits_nat = np.array([[2.0, 0.0, 0.0]], "float32")
    logits_adv = np.array([[1.0, 2.0, 0.0]], "float32")
    bce = np.asarray(losses.mart_boosted_ce(y, logits_adv))
    kl = np.asarray(losses.mart_weighted_kl(y, logits_nat, logits_adv))
    np.testing.assert_allclose(bce, [2.5015], atol=2e-4)
    np.testing.assert_allclose(kl, [0.1581], atol=2e-4)
    # The margin term uses the most likely *wrong* class, even when that is
    # not the arg-max (here the true class 0 leads): -log(1.0001 - 0.2119).
    bce = np.asarray(losses.mart_boosted_ce(np.array([0]), np.array([[2.0, 0.7, 0.0]])))
    p = np.exp([2.0, 0.7, 0.0]) / np.exp([2.0, 0.7, 0.0]).sum()
    np.testing.assert_allclose(bce, [-np.log(p[0]) - np.log(1.0001 - p[1])], atol=1e-5)


def test_the_mart_preset_adds_bce_and_six_times_the_weighted_kl():
    import atalp_keras as ak

    model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 3, widths=(4, 4, 4, 4)))
    model.compile("sgd", method="mart", attack=ak.PGDAttack(0.1, 0.05, 1))
    assert model.loss_weights_["mart_beta"] == 6.0
    y = np.array([0])
    terms, *_ = model._weighted_terms(y, np.array([[2.0, 0.0, 0.0]], "float32"),
                                      np.array([[1.0, 2.0, 0.0]], "float32"), None)
    np.testing.assert_allclose(np.asarray(terms["loss"]), [2.5015 + 6 * 0.1581], atol=1e-3)
    assert {"mart_bce", "mart_kl"} <= set(model._train_keys())

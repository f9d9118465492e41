"""The TRADES preset's training step against its formula (Zhang et al. 2019).

    L = mean_i [ CE(f(x_i), y_i) + beta * KL(softmax f(x_i) || softmax f(x_adv_i)) ]

with beta = 6, the gradient flowing through both f(x) and f(x_adv). The test
fixes x_adv (an attack returning a known shift), takes one plain SGD step with
`train_on_batch`, and compares the logged loss and the updated weights with
the formula computed here by hand: numpy for the value, a GradientTape over a
copy of the classifier for the update.
"""

import keras
import numpy as np
import tensorflow as tf

import atalp_keras as ak
from conftest import small_cnn

LEARNING_RATE = 0.5
BETA = 6.0


class _FixedShift:
    """A stand-in training attack: x_adv = clip(x + delta), the same every call."""

    def __init__(self, delta):
        self.delta = tf.constant(delta)

    def __call__(self, model, x, y):
        return tf.clip_by_value(x + self.delta, 0.0, 1.0)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_trades_step_is_ce_plus_six_kl_natural_to_adversarial(digits):
    x, y = digits[0][:16], digits[1][:16]
    delta = (0.2 * np.sign(np.random.default_rng(1).normal(size=x.shape))).astype("float32")
    x_adv = np.clip(x + delta, 0.0, 1.0)

    classifier = small_cnn(seed=2)  # No BatchNorm or dropout: training=True changes nothing.
    # Sharper logits than at initialisation, so the KL term is far from zero.
    head = classifier.layers[-1]
    head.kernel.assign(head.kernel * 30.0)
    copy = small_cnn(seed=2)
    copy.set_weights(classifier.get_weights())
    model = ak.ATALPModel(classifier, stage_layers=[])
    model.compile(keras.optimizers.SGD(LEARNING_RATE), method="trades",
                  attack=ak.TRADESAttack(0.2, 0.05, 1), eval_attack=None)
    model.train_attack = _FixedShift(delta)
    assert model.loss_weights_["trades_beta"] == BETA

    # The value, by hand in numpy from the classifier's logits before the step.
    log_p = _log_softmax(copy(x).numpy().astype("float64"))
    log_q = _log_softmax(copy(x_adv).numpy().astype("float64"))
    ce = -log_p[np.arange(len(y)), y]
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    expected_loss = float(np.mean(ce + BETA * kl))
    assert np.mean(kl) > 1e-3  # The shift moves the predictions: the KL term counts.

    # The update, by hand: SGD on the same formula, through both passes.
    with tf.GradientTape() as tape:
        p_log = tf.nn.log_softmax(copy(x))
        q_log = tf.nn.log_softmax(copy(tf.constant(x_adv)))
        hand = tf.reduce_mean(
            -tf.gather(p_log, y, batch_dims=1)
            + BETA * tf.reduce_sum(tf.exp(p_log) * (p_log - q_log), -1))
    grads = tape.gradient(hand, copy.trainable_variables)
    expected_weights = [v.numpy() - LEARNING_RATE * g.numpy()
                        for v, g in zip(copy.trainable_variables, grads)]

    logs = model.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(float(hand), expected_loss, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], expected_loss, rtol=1e-5)
    np.testing.assert_allclose(logs["trades_kl"], np.mean(kl), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(logs["ce_natural"], np.mean(ce), rtol=1e-5)
    for got, want in zip(classifier.trainable_variables, expected_weights):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)

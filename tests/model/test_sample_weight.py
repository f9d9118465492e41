"""sample_weight and class_weight weight every loss term as a weighted
per-example mean, sum(w * l) / sum(w) (issue 10, item 5)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atalp_keras as ak
from atalp_keras.losses import weighted_mean
from conftest import assert_trained_alike

# "+awp": with adversarial weight perturbation, whose ascent step must weight
# the examples like the loss does.
METHODS = ["standard", "pat", "fast", "alp", "at", "at_alp", "trades", "mart", "pat+awp",
           "mart+awp"]


def _plain_net(seed=0):
    """No BatchNorm: each example's loss depends on that example alone."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2_block1_out")(inputs)
    b = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu",
                            name="conv3_block1_out")(a)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(b))
    return keras.Model(inputs, outputs)


def _attack(method):
    method = method.partition("+")[0]
    if method == "trades":
        return ak.TRADESAttack(0.2, 0.05, 2, random_start=False)
    if method == "fast":
        return ak.FGSMAttack(0.2, step_size=0.25, random_start=False)
    return "auto" if method == "standard" else ak.PGDAttack(0.2, 0.05, 2, random_start=False)


def _model(method, weights=None):
    classifier = _plain_net()
    if weights is not None:
        classifier.set_weights(weights)
    model = ak.ATALPModel(classifier)
    preset, _, extra = method.partition("+")
    model.compile(keras.optimizers.SGD(1.0), method=preset, attack=_attack(method),
                  eval_attack=None, awp_gamma=0.01 if extra == "awp" else 0.0)
    return model


@pytest.mark.parametrize("method", METHODS)
def test_zero_weight_on_half_the_batch_equals_training_on_the_other_half(method, digits):
    x, y = digits[0][:32], digits[1][:32]
    init = _plain_net().get_weights()
    weighted = _model(method, init)
    w = np.r_[np.ones(16), np.zeros(16)].astype("float32")
    weighted.fit(x, y, sample_weight=w, batch_size=32, shuffle=False, verbose=0)
    half = _model(method, init)
    half.fit(x[:16], y[:16], batch_size=16, shuffle=False, verbose=0)
    assert_trained_alike(weighted.classifier.get_weights(), half.classifier.get_weights(), init)


def test_every_logged_term_is_the_weighted_mean_of_its_per_example_values(digits):
    x, y = digits[0][:4], digits[1][:4]
    w = np.array([1.0, 2.0, 0.0, 3.0], "float32")
    model = _model("at_alp")
    x_adv = model.train_attack(model.classifier, tf.constant(x), tf.constant(y))
    terms, _, _ = model.compute_terms(tf.constant(x), tf.constant(y), x_adv, training=True)
    logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
    for key in ("loss", "ce_natural", "ce_adv", "alp", "at"):
        expected = float(np.sum(w * terms[key].numpy()) / 6.0)
        assert logs[key] == pytest.approx(expected, rel=1e-5), key
    # Unweighted, the same step is the plain mean (here: a different number).
    assert float(np.mean(terms["loss"])) != pytest.approx(logs["loss"], rel=1e-3)


def test_class_weight_equals_the_matching_sample_weight(digits):
    x, y = digits[0][:32], digits[1][:32]
    class_weight = {c: float(c % 3) for c in range(10)}
    init = _plain_net().get_weights()
    by_class = _model("at_alp", init)
    by_class.fit(x, y, class_weight=class_weight, batch_size=32, shuffle=False, verbose=0)
    by_sample = _model("at_alp", init)
    by_sample.fit(x, y, sample_weight=np.array([class_weight[c] for c in y], "float32"),
                  batch_size=32, shuffle=False, verbose=0)
    unweighted = _model("at_alp", init)
    unweighted.fit(x, y, batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(by_class.classifier.get_weights(), by_sample.classifier.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, b) for a, b in zip(by_class.classifier.get_weights(),
                                                     unweighted.classifier.get_weights()))


def test_weighted_mean_by_hand():
    values = tf.constant([1.0, 4.0, 10.0])
    assert float(weighted_mean(values, tf.constant([1.0, 1.0, 0.0]))) == 2.5
    assert float(weighted_mean(values, None)) == 5.0
    assert float(weighted_mean(values, tf.zeros(3))) == 0.0

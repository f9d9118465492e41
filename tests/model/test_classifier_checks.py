"""What a classifier must be to enter ATALPModel (issue 10, items 6, 7, 12):
stages only where a term pairs them, candidates named when detection fails,
probability outputs refused by behaviour, non-functional models refused once."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atalp_keras as ak
from atalp_keras.errors import UsageError
from atalp_keras.features import check_logits_output


def _unnamed_net(head=None):
    """Stages at 8x8 and 4x4 whose names are not ResNet stage ends."""
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", name="first")(inputs)
    a = keras.layers.ReLU(name="first_relu")(a)
    b = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="second")(a)
    b = keras.layers.ReLU(name="second_relu")(b)
    outputs = keras.layers.Dense(10, name="logits")(keras.layers.GlobalAveragePooling2D()(b))
    if head is not None:
        outputs = head(outputs)
    return keras.Model(inputs, outputs, name="unnamed")


@pytest.mark.parametrize("method", ["at", "at_alp"])
def test_attention_methods_refuse_to_run_without_stages(method):
    model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16)), stage_layers=[])
    with pytest.raises(UsageError, match=r"stage_layers=\[\]"):
        model.compile("adam", method=method, attack=ak.PGDAttack(0.2, 0.1, 1))


@pytest.mark.parametrize("method", ["standard", "pat", "alp", "trades", "fast"])
def test_methods_without_the_attention_term_need_no_stages(method, digits):
    model = ak.ATALPModel(_unnamed_net())
    model.compile("adam", method=method, eval_attack=None)
    logs = model.fit(digits[0][:16], digits[1][:16], batch_size=16, verbose=0).history
    assert "at" not in logs and np.isfinite(logs["loss"][-1])


def test_a_failed_detection_lists_the_candidate_layers():
    model = ak.ATALPModel(_unnamed_net())
    with pytest.raises(UsageError) as err:
        model.compile("adam", method="at_alp")
    message = str(err.value)
    assert "first_relu (8x8)" in message and "second_relu (4x4)" in message
    assert "'first'" not in message and "\n" not in message


@pytest.mark.parametrize("head", [
    keras.layers.Activation(tf.nn.softmax),
    keras.layers.Lambda(lambda z: keras.ops.softmax(z)),
    keras.layers.Lambda(lambda z: tf.nn.log_softmax(z)),
    keras.layers.Softmax(),
], ids=["tf.nn.softmax", "ops.softmax", "log_softmax", "Softmax"])
def test_probability_outputs_are_refused_by_behaviour(head):
    with pytest.raises(UsageError, match="probabilities.*logits"):
        ak.ATALPModel(_unnamed_net(head))


def test_dense_with_tf_nn_softmax_is_refused_and_logits_pass():
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(10, activation=tf.nn.softmax)(keras.layers.Flatten()(inputs))
    with pytest.raises(UsageError, match="probabilities"):
        check_logits_output(keras.Model(inputs, outputs))
    check_logits_output(_unnamed_net())  # logits: no error
    # Non-negative logits (e.g. after a ReLU) are not probabilities either.
    check_logits_output(_unnamed_net(keras.layers.ReLU()))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3)
        self.dense = keras.layers.Dense(10)

    def call(self, x):
        return self.dense(keras.layers.Flatten()(self.conv(x)))


@pytest.mark.parametrize("make", [
    Subclassed,
    lambda: keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)]),
], ids=["subclassed", "sequential_without_input"])
def test_non_functional_models_get_one_clear_message(make):
    with pytest.raises(UsageError, match="functional keras.Model built with keras.Input"):
        ak.ATALPModel(make())


def test_following_the_wrapping_advice_works_for_methods_without_attention(digits):
    inner = Subclassed()
    inputs = keras.Input((8, 8, 1))
    model = ak.ATALPModel(keras.Model(inputs, inner(inputs)))
    model.compile("adam", method="alp", attack=ak.PGDAttack(0.2, 0.1, 1), eval_attack=None)
    assert np.isfinite(model.fit(digits[0][:16], digits[1][:16], verbose=0).history["loss"][-1])
    with pytest.raises(UsageError, match="Candidates"):
        model.compile("adam", method="at_alp")

"""``predict`` refuses what ``fit``, ``evaluate`` and the attacks refuse
(issue 24, bug 3: 0-255 images were answered silently, one class for all):
numpy arrays are checked whole, a ``tf.data`` pipeline by its first batch,
every batch in the graph."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atalp_keras as ak
from atalp_keras.errors import UsageError


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(hidden))
    model = ak.ATALPModel(keras.Model(inputs, outputs), stage_layers=[])
    model.compile("adam", method="pat", attack=ak.PGDAttack(0.2, 0.1, 1), eval_attack=None)
    return model


def _one_line(error):
    assert "\n" not in str(error.value)
    return str(error.value)


def test_0_255_arrays_are_refused_with_the_fix(model, digits):
    with pytest.raises(UsageError, match="divide by 255") as error:
        model.predict(digits[2][:8] * 255, verbose=0)
    assert "Received: min=0, max=255" in _one_line(error)


def test_0_255_pipelines_are_refused_by_their_first_batch(model, digits):
    images = digits[2][:8] * 255
    for dataset in (tf.data.Dataset.from_tensor_slices(images).batch(4),
                    tf.data.Dataset.from_tensor_slices((images, digits[3][:8])).batch(4)):
        with pytest.raises(UsageError, match="First batch of the prediction dataset.*"
                                             "divide by 255") as error:
            model.predict(dataset, verbose=0)
        _one_line(error)


def test_a_later_0_255_batch_is_refused_in_the_graph(model, digits):
    good, bad = digits[2][:4], digits[2][4:8] * 255
    dataset = tf.data.Dataset.from_generator(
        lambda: iter([good, bad]), output_signature=tf.TensorSpec((None, 8, 8, 1), tf.float32))
    with pytest.raises(UsageError, match="A batch of the prediction data is invalid: "
                                         "Pixels must be in \\[0, 1\\]") as error:
        model.predict(dataset, verbose=0)
    _one_line(error)


def test_nan_pixels_and_wrong_shapes_are_refused(model, digits):
    x = digits[2][:4].copy()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        model.predict(x, verbose=0)
    with pytest.raises(UsageError, match=r"shape \(N, 8, 8, 1\)"):
        model.predict(digits[2][:4, :6, :6], verbose=0)


def test_valid_images_give_the_classifiers_logits(model, digits):
    x = digits[2][:6]
    expected = model.classifier(x, training=False).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices((x, digits[3][:6])).batch(4)
    np.testing.assert_allclose(model.predict(dataset, verbose=0), expected, atol=1e-6)

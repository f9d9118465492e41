"""`FusedBatchNormalization`: Keras' BatchNorm, computed by the fused kernel."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from atalp_keras import backbones  # noqa: E402
from atalp_keras.backbones import FusedBatchNormalization  # noqa: E402


def _pair(shape, momentum=0.5, **kwargs):
    """A Keras BatchNorm and a fused one with the same (non-trivial) weights."""
    ours = FusedBatchNormalization(momentum=momentum, **kwargs)
    theirs = keras.layers.BatchNormalization(momentum=momentum, **kwargs)
    ours.build(shape)
    theirs.build(shape)
    rng = np.random.default_rng(0)
    channels = shape[-1]
    weights = [rng.uniform(0.5, 2.0, channels), rng.normal(size=channels),
               rng.normal(size=channels), rng.uniform(0.5, 2.0, channels)]
    weights = [w.astype("float32") for w in weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


def test_hand_computed_training_step_and_moving_statistics():
    # One channel, two pixels: values 1 and 3. Batch mean 2, biased variance 1
    # (the unbiased one would be 2), so y = (x - 2) / sqrt(1 + eps).
    layer = FusedBatchNormalization(momentum=0.5, epsilon=0.0)
    x = tf.constant([[[[1.0]], [[3.0]]]])  # (1, 2, 1, 1)
    y = layer(x, training=True)
    np.testing.assert_allclose(y.numpy().ravel(), [-1.0, 1.0], atol=1e-6)
    # moving = 0.5 * initial + 0.5 * batch: mean 0.5 * 0 + 0.5 * 2, variance 0.5 * 1 + 0.5 * 1.
    np.testing.assert_allclose(layer.moving_mean.numpy(), [1.0], atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), [1.0], atol=1e-6)
    # Inference uses the moving statistics: (5 - 1) / sqrt(1) = 4.
    inference = layer(tf.constant([[[[5.0]]]]), training=False)
    np.testing.assert_allclose(inference.numpy().ravel(), [4.0], atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_same_values_gradients_and_statistics_as_keras(training):
    shape = (3, 5, 4, 6)
    ours, theirs = _pair(shape)
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, shape).astype("float32"))
    weights = tf.reshape(tf.range(np.prod(shape), dtype="float32"), shape) / np.prod(shape)
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            # A non-uniform upstream gradient, so the batch-statistics terms matter.
            loss = tf.reduce_sum(y * weights)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append((y, grads, [v.numpy() for v in (layer.moving_mean,
                                                       layer.moving_variance)]))
    (y_ours, g_ours, s_ours), (y_theirs, g_theirs, s_theirs) = results
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_ours, g_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(s_ours, s_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_frozen_layer_uses_moving_statistics_even_in_training():
    ours, theirs = _pair((2, 3, 3, 2))
    ours.trainable = theirs.trainable = False
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 3, 3, 2)).astype("float32"))
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), atol=1e-5)
    np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.moving_mean.numpy())


def test_inputs_the_kernel_cannot_take_run_keras_computation():
    ours, theirs = _pair((4, 3), momentum=0.9)  # rank 2: a Dense layer's output
    x = tf.constant(np.random.default_rng(3).normal(size=(4, 3)).astype("float32"))
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), atol=1e-5)
    assert not ours._fusable(tf.zeros((2, 3, 3, 2)), mask=tf.ones((2, 3, 3)))
    assert not FusedBatchNormalization(axis=1)._fusable(tf.zeros((2, 3, 3, 2)), None)
    assert not FusedBatchNormalization(synchronized=True)._fusable(tf.zeros((2, 3, 3, 2)), None)


def test_mixed_precision_keeps_the_compute_dtype():
    layer = FusedBatchNormalization(dtype="mixed_bfloat16")
    x = tf.cast(tf.random.stateless_normal((2, 4, 4, 3), seed=(0, 1)), "bfloat16")
    y = layer(x, training=True)
    assert y.dtype == tf.bfloat16
    assert layer.moving_mean.dtype == "float32"


def test_resnets_use_it_and_weights_move_to_keras_layers(tmp_path):
    fused = backbones.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    plain = backbones.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16), fused_bn=False)
    kinds = {type(layer) for layer in fused.layers
             if isinstance(layer, keras.layers.BatchNormalization)}
    assert kinds == {FusedBatchNormalization}
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in plain.layers)
    plain.set_weights(fused.get_weights())
    x = np.random.default_rng(4).uniform(size=(6, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-5)
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), atol=1e-4)
    # Saved and loaded as itself.
    path = str(tmp_path / "fused.keras")
    fused.save(path)
    loaded = keras.saving.load_model(path)
    assert any(isinstance(layer, FusedBatchNormalization) for layer in loaded.layers)
    np.testing.assert_allclose(loaded(x, training=False), fused(x, training=False), atol=1e-6)


def test_float64_and_tiny_epsilon_run_keras_computation():
    x = tf.constant(np.random.default_rng(5).normal(size=(2, 3, 3, 2)))
    for kwargs in ({"dtype": "float64"}, {"epsilon": 1e-6}):
        ours, theirs = _pair((2, 3, 3, 2), **kwargs)
        data = tf.cast(x, ours.compute_dtype)
        assert not ours._fusable(data, None)
        np.testing.assert_allclose(ours(data, training=True), theirs(data, training=True),
                                   atol=1e-6)

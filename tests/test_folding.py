"""The attacks' folded view of a classifier: the same function, BatchNorm folded
into the convolutions, always reading the current weights."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

import atalp_keras as ak  # noqa: E402
from atalp_keras import attacks, folding  # noqa: E402
from atalp_keras.attacks.primitives import model_logits  # noqa: E402


def _randomise_batchnorms(model, seed=0):
    """Non-trivial statistics and affine weights, so a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            values = {"gamma": rng.uniform(0.5, 2.0), "beta": rng.normal(),
                      "moving_mean": rng.normal(), "moving_variance": rng.uniform(0.5, 2.0)}
            layer.set_weights([np.full(v.shape, values[v.name], "float32") *
                               rng.uniform(0.8, 1.2, v.shape).astype("float32")
                               for v in layer.weights])


def _batchnorms(model):
    return [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]


def _images(n=6, shape=(8, 8, 1), seed=1):
    return tf.constant(np.random.default_rng(seed).uniform(size=(n,) + shape).astype("float32"))


def _logits_and_gradient(model, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        objective = tf.reduce_sum(logits * tf.range(1.0, 11.0))
    return logits, tape.gradient(objective, x)


@pytest.mark.parametrize("fused_bn", [True, False])
def test_folded_resnet_computes_the_same_logits_and_input_gradients(fused_bn):
    model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16), fused_bn=fused_bn)
    _randomise_batchnorms(model)
    view = folding.fold_batchnorm(model)
    assert _batchnorms(model) and not _batchnorms(view)  # every BatchNorm follows a conv
    x = _images()
    logits, grad = _logits_and_gradient(model, x)
    view_logits, view_grad = _logits_and_gradient(view, x)
    np.testing.assert_allclose(view_logits, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(view_grad, grad, rtol=1e-3, atol=1e-5)


def test_hand_computed_fold_of_one_convolution_with_a_bias():
    # 1x1 conv, kernel 2, bias 1; BN mean 3, variance 4 (eps 0), gamma 0.5, beta 1:
    # x = 5 -> conv 11 -> 0.5 * (11 - 3) / 2 + 1 = 3.
    inputs = keras.Input((1, 1, 1))
    conv = layers.Conv2D(1, 1, use_bias=True)
    bn = layers.BatchNormalization(epsilon=0.0)
    model = keras.Model(inputs, bn(conv(inputs)))
    conv.set_weights([np.full((1, 1, 1, 1), 2.0, "float32"), np.ones(1, "float32")])
    bn.set_weights([np.array([0.5], "float32"), np.ones(1, "float32"),
                    np.array([3.0], "float32"), np.array([4.0], "float32")])
    view = folding.fold_batchnorm(model)
    assert not _batchnorms(view)
    assert float(view(tf.fill((1, 1, 1, 1), 5.0), training=False)[0, 0, 0, 0]) == \
        pytest.approx(3.0)


def test_view_follows_weight_updates_of_the_classifier():
    model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    view = folding.attack_view(model)
    x = _images()
    _randomise_batchnorms(model, seed=3)
    model.get_layer("conv1_conv").kernel.assign(model.get_layer("conv1_conv").kernel * 1.5)
    np.testing.assert_allclose(view(x, training=False), model(x, training=False),
                               rtol=1e-4, atol=1e-4)
    # One view per classifier, no variables of its own.
    assert folding.attack_view(model) is view
    assert {id(v) for v in view.weights} == {id(v) for v in model.weights}


def test_pairs_that_cannot_be_folded_are_left_as_they_are():
    inputs = keras.Input((6, 6, 2))
    shared = layers.Conv2D(3, 3, padding="same", use_bias=False)(inputs)
    branch = layers.BatchNormalization()(shared)   # the conv output also feeds the Add
    activated = layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    after_relu = layers.BatchNormalization()(activated)
    outputs = layers.Dense(10)(layers.GlobalAveragePooling2D()(
        layers.Add()([branch, shared, after_relu])))
    model = keras.Model(inputs, outputs)
    _randomise_batchnorms(model)
    assert folding.fold_batchnorm(model) is model
    sequential = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3),
                                   layers.BatchNormalization(), layers.Flatten(),
                                   layers.Dense(10)])
    assert folding.attack_view(sequential) is sequential


def test_model_logits_calls_the_folded_view():
    model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    _randomise_batchnorms(model, seed=5)
    calls = []
    view = folding.attack_view(model)
    original_call = view.call
    view.call = lambda *args, **kwargs: calls.append(1) or original_call(*args, **kwargs)
    try:
        x = _images()
        np.testing.assert_allclose(model_logits(model, x), model(x, training=False),
                                   rtol=1e-4, atol=1e-4)
        assert calls
    finally:
        view.call = original_call


# The smallest settings of each registered attack (a new attack needs a line).
TINY_ATTACKS = {
    "fgsm": {}, "pgd": {"num_steps": 1}, "trades": {"num_steps": 1},
    "apgd-ce": {"num_steps": 2}, "apgd-dlr": {"num_steps": 2},
    "apgd-t": {"num_steps": 2, "n_target_classes": 1},
    "fab-t": {"num_steps": 2, "n_target_classes": 1}, "square": {"n_queries": 3},
    "rays": {"n_queries": 4},
    "autoattack": {"num_steps": 2, "n_target_classes": 1, "n_queries": 3},
    "autoattack-fast": {"num_steps": 2, "n_target_classes": 1, "n_queries": 3},
}


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
def test_every_attack_calls_the_folded_view_never_the_classifier(name):
    """Every attack in the registry reaches the classifier only through its
    folded view: the view is called, the classifier itself never."""
    assert name in TINY_ATTACKS, f"{name!r} has no entry in TINY_ATTACKS"
    model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    _randomise_batchnorms(model, seed=5)
    view = folding.attack_view(model)
    assert view is not model
    calls = {"view": 0, "classifier": 0}

    def counting(which, call):
        def counted(*args, **kwargs):
            calls[which] += 1
            return call(*args, **kwargs)
        return counted
    view.call = counting("view", view.call)
    model.call = counting("classifier", model.call)
    attack = attacks.get_attack(name, eps=0.1, seed=0, **TINY_ATTACKS[name])
    x = _images(n=4).numpy()
    # Labelled by the model's own predictions: every image is attacked (a
    # misclassified one is skipped by most attacks).
    y = np.argmax(model.predict(x, verbose=0), -1).astype("int32")
    calls["classifier"] = 0
    attack.run(model, x, y, batch_size=4)
    assert calls["view"] > 0 and calls["classifier"] == 0, calls


def test_mixed_precision_fold_stays_close():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    _randomise_batchnorms(model, seed=7)
    view = folding.fold_batchnorm(model)
    x = _images()
    # bfloat16 has 8 bits of mantissa: agreement to a few percent of the logits' scale.
    scale = float(tf.reduce_max(tf.abs(model(x, training=False))))
    np.testing.assert_allclose(view(x, training=False), model(x, training=False),
                               atol=0.05 * scale)


def test_folding_can_be_turned_off_for_a_trace():
    model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    assert folding.attack_view(model) is not model
    with folding.attack_folding(False):
        assert folding.attack_view(model) is model
        with folding.attack_folding(True):
            assert folding.attack_view(model) is not model
    assert folding.attack_view(model) is not model


def test_view_of_a_compiled_classifier_first_asked_inside_a_trace():
    model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    model.compile(keras.optimizers.Adam(1e-2), loss="mse")
    x = _images()
    logits = tf.function(lambda xb: model_logits(model, xb))(x)
    np.testing.assert_allclose(logits, model(x, training=False), rtol=1e-4, atol=1e-4)
    assert not _batchnorms(folding.attack_view(model))


@pytest.mark.parametrize("with_batchnorm", [True, False])
def test_the_view_does_not_keep_its_classifier_alive(with_batchnorm):
    import gc
    import weakref

    inputs = keras.Input((6, 6, 1))
    x = layers.Conv2D(2, 3)(inputs)
    if with_batchnorm:
        x = layers.BatchNormalization()(x)
    model = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(x)))
    assert (folding.attack_view(model) is model) is not with_batchnorm
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_a_convolution_also_read_by_a_raw_op_is_not_folded():
    # b + c reads the convolution's own output: folding the BatchNorm into the
    # convolution would hand that op the normalised tensor instead.
    inputs = keras.Input((6, 6, 1))
    conv = layers.Conv2D(2, 3, padding="same")(inputs)
    normed = layers.BatchNormalization()(conv)
    model = keras.Model(inputs, layers.Flatten()(normed + conv))
    _randomise_batchnorms(model)
    assert folding.fold_batchnorm(model) is model


def test_batchnorm_subclasses_are_not_folded():
    class Shifted(layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            return super().call(inputs, training=training, mask=mask) + 1.0

    inputs = keras.Input((6, 6, 1))
    outputs = Shifted()(layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(outputs)))
    assert folding.fold_batchnorm(model) is model


def test_fold_keeps_the_batchnorm_output_dtype():
    # A float16 convolution followed by a float32 BatchNorm gives float32.
    inputs = keras.Input((6, 6, 1))
    conv = layers.Conv2D(2, 3, padding="same", dtype="mixed_float16")(inputs)
    outputs = layers.BatchNormalization(dtype="float32")(conv)
    model = keras.Model(inputs, outputs)
    _randomise_batchnorms(model)
    view = folding.fold_batchnorm(model)
    assert view is not model
    x = _images(shape=(6, 6, 1))
    assert view(x, training=False).dtype == model(x, training=False).dtype == tf.float32
    np.testing.assert_allclose(view(x, training=False), model(x, training=False), atol=2e-2)

"""ATALPModel: every preset trains, the loss is wired as METHOD.md says,
`standard` is plain Keras training, saving round-trips, bad input is refused."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atalp_keras as ak
from atalp_keras.errors import UsageError

WIDTHS = (4, 8, 8, 16)
EXPECTED_KEYS = {
    "standard": {"loss", "ce_natural", "accuracy"},
    "pat": {"loss", "ce_natural", "ce_adv", "accuracy", "adv_accuracy"},
    "fast": {"loss", "ce_natural", "ce_adv", "accuracy", "adv_accuracy"},
    "alp": {"loss", "ce_natural", "ce_adv", "alp", "at", "accuracy", "adv_accuracy"},
    "at": {"loss", "ce_natural", "ce_adv", "alp", "at", "accuracy", "adv_accuracy"},
    "at_alp": {"loss", "ce_natural", "ce_adv", "alp", "at", "accuracy", "adv_accuracy"},
    "trades": {"loss", "ce_natural", "ce_adv", "alp", "at", "trades_kl", "accuracy",
               "adv_accuracy"},
}


def _tiny(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return ak.tiny_resnet((8, 8, 1), 10, widths=WIDTHS, **kwargs)


def _attack(method, eps=0.2):
    if method == "standard":
        return "auto"
    if method == "fast":
        return ak.FGSMAttack(eps, step_size=1.25 * eps, random_start=True, seed=0)
    if method == "trades":
        return ak.TRADESAttack(eps, 0.1, 2, seed=0)
    return ak.PGDAttack(eps, 0.1, 2, seed=0)


@pytest.mark.parametrize("method", sorted(EXPECTED_KEYS))
def test_every_preset_fits_with_finite_logs_and_only_trains_the_classifier(method, digits):
    x, y = digits[0][:96], digits[1][:96]
    model = ak.ATALPModel(_tiny())
    model.compile(keras.optimizers.SGD(0.05), method=method, attack=_attack(method),
                  eval_attack=None)
    assert {id(v) for v in model.trainable_variables} == \
        {id(v) for v in model.classifier.trainable_variables}
    before = [v.numpy().copy() for v in model.classifier.trainable_variables]
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    logs = {k: v[-1] for k, v in history.history.items()}
    assert set(logs) == EXPECTED_KEYS[method]
    assert all(np.isfinite(v) for v in logs.values())
    after = [v.numpy() for v in model.classifier.trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_compute_terms_matches_the_formula_by_hand(digits):
    x, y = digits[0][:6], digits[1][:6]
    classifier = _tiny()
    model = ak.ATALPModel(classifier)
    model.compile("sgd", method="at_alp", attack=ak.PGDAttack(0.2, 0.1, 1, seed=0),
                  alp_weight=0.3, at_weight=2.0, natural_weight=0.4, adv_weight=0.6)
    x_adv = np.clip(x + 0.1 * np.sign(np.random.default_rng(0).normal(size=x.shape)),
                    0, 1).astype("float32")
    terms, _, _ = model.compute_terms(tf.constant(x), tf.constant(y), tf.constant(x_adv),
                                      training=False)
    # Independent computation: separate passes and numpy formulas.
    probe = keras.Model(classifier.input,
                        [classifier.get_layer(n).output for n in model.stage_layers])
    ln, la = classifier(x).numpy(), classifier(x_adv).numpy()

    def ce(logits):
        z = logits - logits.max(-1, keepdims=True)
        return np.log(np.exp(z).sum(-1)) - z[np.arange(len(y)), y]

    def qhat(a):
        q = (a ** 2).sum(-1).reshape(len(a), -1)
        return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)

    at = sum(np.linalg.norm(qhat(a.numpy()) - qhat(b.numpy()), axis=-1)
             for a, b in zip(probe(x), probe(x_adv)))
    alp = ((ln - la) ** 2).mean(-1)
    expected = 0.4 * ce(ln) + 0.6 * ce(la) + 0.3 * alp + 2.0 * at
    np.testing.assert_allclose(terms["at"], at, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(terms["alp"], alp, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(terms["loss"], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pair_pass", ["joint", "separate"])
def test_pair_pass_sets_which_images_batchnorm_normalises_together(pair_pass, digits):
    """joint: one training pass of concat([x, x_adv]); separate: x, then
    x_adv, each normalised with its own batch statistics, and BatchNorm's
    moving mean updated twice (by hand on the first BatchNorm layer)."""
    x, y = digits[0][:24], digits[1][:24]
    classifier = _tiny(seed=1)
    start = classifier.get_weights()
    x_adv = ak.PGDAttack(0.2, 0.1, 2, random_start=False).perturb(classifier, x, y)
    model = ak.ATALPModel(classifier)
    model.compile("sgd", method="trades", attack=ak.TRADESAttack(0.2, 0.1, 1, seed=0),
                  pair_pass=pair_pass)
    terms, logits_nat, logits_adv = model.compute_terms(
        tf.constant(x), tf.constant(y), tf.constant(x_adv), training=True)

    reference = _tiny(seed=1)
    reference.set_weights(start)
    bn = next(layer for layer in reference.layers
              if isinstance(layer, keras.layers.BatchNormalization))
    m, mean0 = bn.momentum, bn.moving_mean.numpy().copy()
    pre = keras.Model(reference.input, bn.input)

    def batch_mean(images):
        return pre(images).numpy().astype(np.float64).mean(axis=(0, 1, 2))

    if pair_pass == "joint":
        both = reference(np.concatenate([x, x_adv]), training=True).numpy()
        ln, la = both[:len(x)], both[len(x):]
        moving = m * mean0 + (1 - m) * batch_mean(np.concatenate([x, x_adv]))
    else:
        ln = reference(x, training=True).numpy()
        la = reference(x_adv, training=True).numpy()
        moving = m * (m * mean0 + (1 - m) * batch_mean(x)) + (1 - m) * batch_mean(x_adv)
    np.testing.assert_allclose(logits_nat, ln, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits_adv, la, rtol=1e-4, atol=1e-5)
    trained_bn = classifier.get_layer(bn.name)
    np.testing.assert_allclose(trained_bn.moving_mean.numpy(), moving, rtol=1e-4, atol=1e-6)

    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    kl = (np.exp(log_softmax(ln)) * (log_softmax(ln) - log_softmax(la))).sum(-1)
    ce = -log_softmax(ln)[np.arange(len(y)), y]
    np.testing.assert_allclose(terms["loss"], ce + 6.0 * kl, rtol=1e-4, atol=1e-5)


def test_pair_pass_separate_pairs_the_attention_maps_of_two_passes(digits):
    x, y = digits[0][:8], digits[1][:8]
    classifier = _tiny(seed=2)
    x_adv = ak.PGDAttack(0.2, 0.1, 1, random_start=False).perturb(classifier, x, y)
    model = ak.ATALPModel(classifier)
    model.compile("sgd", method="at_alp", attack=ak.PGDAttack(0.2, 0.1, 1), pair_pass="separate")
    terms, _, _ = model.compute_terms(tf.constant(x), tf.constant(y), tf.constant(x_adv),
                                      training=True)
    probe = keras.Model(classifier.input,
                        [classifier.get_layer(n).output for n in model.stage_layers])
    expected = ak.attention.attention_pairing_loss(probe(x, training=True),
                                                   probe(x_adv, training=True))
    np.testing.assert_allclose(terms["at"], expected, rtol=1e-4, atol=1e-6)


def test_a_bad_pair_pass_is_refused_in_one_line():
    model = ak.ATALPModel(_tiny())
    with pytest.raises(UsageError, match=r"one of 'joint', 'separate'. Received: "
                                         r"pair_pass='split'"):
        model.compile("sgd", method="trades", pair_pass="split")
    # pat trains on x_adv alone: there is no pair to split.
    with pytest.raises(UsageError, match=r"pair_pass='separate'.*method 'pat'.*adv_weight=1"):
        model.compile("sgd", method="pat", pair_pass="separate")
    model.compile("sgd", method="pat", pair_pass="joint")


def test_standard_equals_plain_keras_training(digits):
    x, y = digits[0][:128], digits[1][:128]
    ours = _tiny(seed=3)
    plain = _tiny(seed=3)
    plain.set_weights(ours.get_weights())
    model = ak.ATALPModel(ours)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), method="standard")
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    plain.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_save_load_roundtrip_and_continue_training(digits, tmp_path):
    x, y = digits[0][:64], digits[1][:64]
    model = ak.ATALPModel(_tiny())
    model.compile(keras.optimizers.Adam(1e-3), method="at_alp",
                  attack=ak.PGDAttack(0.2, 0.1, 2, seed=0), at_weight=0.7)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, ak.ATALPModel)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert loaded.method == "at_alp" and loaded.loss_weights_["at_weight"] == 0.7
    assert loaded.train_attack.get_config() == model.train_attack.get_config()
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
    history = loaded.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert int(loaded.optimizer.iterations) == 4


def test_test_step_reports_clean_and_pgd_accuracy(digits):
    x, y = digits[2][:64], digits[3][:64]
    model = ak.ATALPModel(_tiny())
    model.compile("adam", method="pat", attack=ak.PGDAttack(0.2, 0.1, 2, seed=0))
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "ce_natural", "ce_adv", "accuracy", "adv_accuracy"}
    assert logs["adv_accuracy"] <= logs["accuracy"]
    model.compile("adam", method="pat", attack=ak.PGDAttack(0.2, 0.1, 2), eval_attack=None)
    assert set(model.evaluate(x, y, verbose=0, return_dict=True)) == \
        {"loss", "ce_natural", "accuracy"}


# ------------------------------------------------------------------ bad input
@pytest.fixture
def compiled():
    model = ak.ATALPModel(_tiny())
    model.compile("adam", method="at_alp", attack=ak.PGDAttack(0.2, 0.1, 1))
    return model


def test_nan_pixels_are_refused(compiled, digits):
    x, y = digits[0][:8].copy(), digits[1][:8]
    x[2, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compiled.fit(x, y, verbose=0)


def test_nan_pixels_in_a_dataset_are_refused_in_one_line(compiled, digits):
    x, y = digits[0][:16].copy(), digits[1][:16]
    x[0, 0, 0, 0] = np.nan  # first batch: caught eagerly, before tracing
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with pytest.raises(UsageError, match="First batch of the training dataset.*NaN"):
        compiled.fit(ds, verbose=0)
    x[0, 0, 0, 0], x[12, 1, 1, 0] = 0.5, np.nan  # second batch: the in-graph check
    with pytest.raises(UsageError, match="NaN or inf pixels; count: 1$") as err:
        compiled.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), verbose=0)
    assert "\n" not in str(err.value)


def test_labels_out_of_range_are_refused(compiled, digits):
    x, y = digits[0][:8], digits[1][:8].copy()
    y[0] = 10
    with pytest.raises(ValueError, match="10"):
        compiled.fit(x, y, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with pytest.raises(UsageError, match=r"Labels must be in \[0, 10\)"):
        compiled.fit(ds, verbose=0)
    y = np.concatenate([digits[1][:8], y])
    ds = tf.data.Dataset.from_tensor_slices((digits[0][:16], y)).batch(8)
    with pytest.raises(UsageError, match=r"Labels must be in \[0, 10\)\. Received min/max: \d+ 10$"):
        compiled.fit(ds, verbose=0)


def test_a_dict_of_weights_with_an_unknown_key_is_refused(compiled, digits):
    x, y = digits[0][:8], digits[1][:8]
    weights = {"sample_weights": np.ones(8, "float32")}  # a typo: would drop the weights
    ds = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
    with pytest.raises(UsageError, match=r"^The training dataset: .*'sample_weight' and/or "
                                         r"'attack_mask'\. Received: keys \['sample_weights'\]$"):
        compiled.fit(ds, verbose=0)
    right = tf.data.Dataset.from_tensor_slices((x, y, {"sample_weight": weights[
        "sample_weights"]})).batch(8)
    compiled.fit(right, verbose=0)


def test_0_255_pixels_are_refused(compiled, digits):
    x, y = digits[0][:8] * 255.0, digits[1][:8]
    with pytest.raises(ValueError, match="255"):
        compiled.fit(x, y, verbose=0)


def test_wrong_input_shape_is_refused(compiled):
    x = np.zeros((8, 9, 9, 1), "float32")
    y = np.zeros((8,), "int32")
    with pytest.raises(ValueError, match=r"\(8, 8, 1\)|8, 8, 1"):
        compiled.fit(x, y, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    # Now caught on the pipeline's first batch, before tracing (issue 10, item 13).
    with pytest.raises(UsageError, match=r"First batch.*shape \(N, 8, 8, 1\)"):
        compiled.fit(ds, verbose=0)


def test_unknown_stage_layer_lists_existing_names():
    with pytest.raises(ValueError) as err:
        ak.ATALPModel(_tiny(), stage_layers=["conv2_block1_out", "conv9_block1_out"])
    assert "conv9_block1_out" in str(err.value) and "conv3_block1_out" in str(err.value)


def test_softmax_classifier_is_refused():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, name="conv2_block1_out")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(h))
    with pytest.raises(ValueError, match="softmax.*logits"):
        ak.ATALPModel(keras.Model(inputs, outputs))


def test_unknown_method_and_negative_weight_are_refused():
    model = ak.ATALPModel(_tiny())
    with pytest.raises(ValueError, match="Expected one of: standard, pat"):
        model.compile("adam", method="madry")
    with pytest.raises(ValueError, match="alp_weight=-1"):
        model.compile("adam", method="alp", alp_weight=-1)
    with pytest.raises(ValueError, match="no `loss`"):
        model.compile("adam", loss="mse")


def test_user_model_with_named_layers(digits):
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="block_a")(inputs)
    b = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="block_b")(a)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(b))
    model = ak.ATALPModel(keras.Model(inputs, outputs), stage_layers=["block_a", "block_b"])
    model.compile("adam", method="at_alp", attack=ak.PGDAttack(0.2, 0.1, 1))
    logs = model.fit(digits[0][:32], digits[1][:32], batch_size=16, verbose=0).history
    assert logs["at"][-1] > 0


@pytest.mark.parametrize("name, shape, stages", [
    ("tiny", (8, 8, 1), ["conv2_block1_out", "conv3_block1_out", "conv4_block1_out",
                         "conv5_block1_out"]),
    ("cnn", (8, 8, 1), ["conv2_block1_out", "conv3_block1_out"]),
    ("resnet18", (32, 32, 3), ["conv2_block2_out", "conv3_block2_out", "conv4_block2_out",
                               "conv5_block2_out"]),
    ("resnet34", (32, 32, 3), ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out",
                               "conv5_block3_out"]),
    ("resnet50", (32, 32, 3), ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out",
                               "conv5_block3_out"]),
])
def test_backbones_expose_their_stage_ends(name, shape, stages):
    classifier = ak.build_backbone(name, shape, 7)
    assert ak.stage_layer_names(classifier) == stages
    assert classifier.output.shape[-1] == 7
    model = ak.ATALPModel(classifier)
    out = model.feature_model(np.zeros((1,) + shape, "float32"))
    assert len(out["stages"]) == len(stages)
    assert all(len(s.shape) == 4 for s in out["stages"])


def test_cifar_resnet18_has_the_cifar_stem_and_11m_weights():
    classifier = ak.cifar_resnet(18)
    assert 11.1e6 < classifier.count_params() < 11.3e6
    # 3x3 stem, no max-pool: 32x32 input keeps 32x32 at conv2_x and 4x4 at conv5_x.
    assert tuple(classifier.get_layer("conv2_block2_out").output.shape[1:3]) == (32, 32)
    assert tuple(classifier.get_layer("conv5_block2_out").output.shape[1:3]) == (4, 4)


def test_pixel_normalization_matches_caffe_preprocessing():
    from atalp_keras.backbones import IMAGENET_CAFFE_MEAN_BGR, PixelNormalization

    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype("float32")
    ours = PixelNormalization(IMAGENET_CAFFE_MEAN_BGR, 1.0, scale=255.0, reverse_channels=True)(x)
    expected = keras.applications.resnet.preprocess_input(x * 255.0)
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-3)

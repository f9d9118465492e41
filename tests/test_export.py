"""Tests of atalp_keras.export: the TF Serving contract and loading back."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.export import export_saved_model, load_classifier

# The console script installed with TensorFlow, else the same tool as a module.
SAVED_MODEL_CLI = [os.path.join(os.path.dirname(sys.executable), "saved_model_cli")]
if not os.path.isfile(SAVED_MODEL_CLI[0]):
    SAVED_MODEL_CLI = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def _tiny_classifier(num_classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


class Wrapper(keras.Model):
    """Like the package's training wrapper: a subclass around a classifier."""

    def __init__(self, classifier, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier

    def call(self, x, training=False):
        return self.classifier(x, training=training)


class Anonymous(keras.Model):
    """A subclass that does not expose its input shape."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x, training=False):
        return self.inner(x, training=training) * 2.0


@pytest.fixture(scope="module")
def model():
    return _tiny_classifier()


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).rand(5, 8, 8, 1).astype(np.float32)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    base = tmp_path_factory.mktemp("export") / "models"
    path = export_saved_model(model, str(base),
                              metadata={"class_names": ["a", "b", "c"], "dataset": "x"})
    return base, path


def test_round_trip_serving_signature(model, images, exported):
    base, path = exported
    assert path == os.path.join(str(base), "1")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    out = serve(images=tf.constant(images))
    logits = model(images, training=False).numpy()
    np.testing.assert_allclose(out["logits"].numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               tf.nn.softmax(logits).numpy(), atol=1e-5)
    np.testing.assert_array_equal(out["classes"].numpy(), logits.argmax(-1))

    args, kwargs = serve.structured_input_signature
    assert args == () and list(kwargs) == ["images"]
    assert kwargs["images"].shape.as_list() == [None, 8, 8, 1]
    assert kwargs["images"].dtype == tf.float32
    outputs = serve.structured_outputs
    assert sorted(outputs) == ["classes", "logits", "probabilities"]
    assert outputs["logits"].shape.as_list() == [None, 3]
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["classes"].dtype == tf.int64
    assert outputs["classes"].shape.as_list() == [None]


def test_metadata_in_assets_extra(exported):
    _, path = exported
    assert sorted(os.listdir(path)) == sorted(
        ["assets", "assets.extra", "fingerprint.pb", "saved_model.pb", "variables"])
    with open(os.path.join(path, "assets.extra", "atalp_metadata.json")) as handle:
        meta = json.load(handle)
    assert meta["input_shape"] == [8, 8, 1] and meta["num_classes"] == 3
    assert meta["class_names"] == ["a", "b", "c"] and meta["dataset"] == "x"


def test_saved_model_cli_shows_the_contract(exported):
    _, path = exported
    result = subprocess.run(
        SAVED_MODEL_CLI + ["show", "--dir", path, "--tag_set", "serve",
         "--signature_def", "serving_default"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for word in ("inputs['images']", "outputs['logits']", "outputs['probabilities']",
                 "outputs['classes']", "DT_INT64", "(-1, 8, 8, 1)",
                 "tensorflow/serving/predict"):
        assert word in text


def test_versions_increment_and_are_never_overwritten(model, tmp_path):
    base = str(tmp_path / "models")
    assert export_saved_model(model, base) == os.path.join(base, "1")
    assert export_saved_model(model, base) == os.path.join(base, "2")
    assert export_saved_model(model, base, version=7) == os.path.join(base, "7")
    assert export_saved_model(model, base) == os.path.join(base, "8")
    pb = os.path.join(base, "2", "saved_model.pb")
    before = (open(pb, "rb").read(), os.stat(pb).st_mtime_ns)
    with pytest.raises(ValueError, match="Version 2 already exists") as error:
        export_saved_model(_tiny_classifier(seed=1), base, version=2)
    assert "version=2" in str(error.value)
    assert (open(pb, "rb").read(), os.stat(pb).st_mtime_ns) == before
    assert sorted(os.listdir(base)) == ["1", "2", "7", "8"]  # no temp dirs
    with pytest.raises(ValueError, match="version=0"):
        export_saved_model(model, base, version=0)


def test_base_dir_that_is_a_file_is_refused(model, tmp_path):
    a_file = tmp_path / "models"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match="it is a file") as error:
        export_saved_model(model, str(a_file))
    assert str(a_file) in str(error.value)


def test_failed_export_leaves_nothing_behind(model, tmp_path, monkeypatch):
    base = str(tmp_path / "models")
    export_saved_model(model, base)

    def broken_save(obj, export_dir, *args, **kwargs):
        os.makedirs(export_dir)
        with open(os.path.join(export_dir, "saved_model.pb"), "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, base)
    assert os.listdir(base) == ["1"]
    monkeypatch.undo()
    assert export_saved_model(model, base) == os.path.join(base, "2")


def test_subclass_models_export(model, images, tmp_path):
    wrapper = Wrapper(model)  # never called: export builds it
    path = export_saved_model(wrapper, str(tmp_path / "a"))
    out = tf.saved_model.load(path).signatures["serving_default"](images=images)
    np.testing.assert_allclose(out["logits"].numpy(), model(images).numpy(), atol=1e-5)

    anonymous = Anonymous(model)
    with pytest.raises(ValueError, match="Pass input_shape") as error:
        export_saved_model(anonymous, str(tmp_path / "b"))
    assert "Anonymous" in str(error.value)
    path = export_saved_model(anonymous, str(tmp_path / "b"), input_shape=(8, 8, 1))
    out = tf.saved_model.load(path).signatures["serving_default"](images=images)
    np.testing.assert_allclose(out["logits"].numpy(), 2 * model(images).numpy(),
                               atol=1e-5)


def test_metadata_must_match_the_model(model, tmp_path):
    with pytest.raises(ValueError, match="name 3 classes. Received 2"):
        export_saved_model(model, str(tmp_path), metadata={"class_names": ["a", "b"]})
    with pytest.raises(ValueError, match="JSON"):
        export_saved_model(model, str(tmp_path), metadata={"bad": object()})
    assert not os.listdir(tmp_path)


def test_load_classifier_from_saved_model(model, images, exported, tmp_path):
    base, path = exported
    for where in (str(base), path):  # base dir -> highest version
        loaded = load_classifier(where)
        np.testing.assert_allclose(loaded(images, training=False).numpy(),
                                   model(images).numpy(), atol=1e-5)
        assert loaded.input_shape == (None, 8, 8, 1)
        assert loaded.num_classes == 3 and loaded.class_names == ["a", "b", "c"]
    assert loaded.predict(images, verbose=0).shape == (5, 3)

    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = keras.losses.sparse_categorical_crossentropy(
            np.array([0, 1, 2, 0, 1]), loaded(x, training=False), from_logits=True)
    gradient = tape.gradient(loss, x)
    assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0

    # Highest version wins.
    newer = _tiny_classifier(seed=5)
    export_saved_model(newer, str(base), version=3)
    np.testing.assert_allclose(load_classifier(str(base))(images).numpy(),
                               newer(images).numpy(), atol=1e-5)


def test_load_classifier_from_keras_file(model, images, tmp_path):
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = load_classifier(path)
    np.testing.assert_allclose(loaded(images, training=False).numpy(),
                               model(images).numpy(), atol=1e-6)


def test_load_classifier_errors(tmp_path):
    missing = str(tmp_path / "nothing")
    with pytest.raises(ValueError, match="No model at this path") as error:
        load_classifier(missing)
    assert f"path={missing!r}" in str(error.value)

    empty = tmp_path / "empty"
    (empty / "old").mkdir(parents=True)
    with pytest.raises(ValueError, match="no SavedModel .* no numbered version"):
        load_classifier(str(empty))

    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip")
    with pytest.raises(ValueError, match="Cannot load .* as a Keras model file") as error:
        load_classifier(str(fake))
    assert str(fake) in str(error.value)

    other = tmp_path / "weights.bin"
    other.write_text("x")
    with pytest.raises(ValueError, match="Expected a .keras file or a SavedModel"):
        load_classifier(str(other))


def test_a_softmax_model_is_refused_by_behaviour(tmp_path):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(3, activation=tf.nn.softmax)(keras.layers.Flatten()(inputs))
    with pytest.raises(ValueError, match="probabilities"):
        export_saved_model(keras.Model(inputs, outputs), str(tmp_path / "m"))
    assert not os.path.exists(tmp_path / "m")


@pytest.mark.parametrize("when", ["after_fit", "new"])
def test_keras_export_of_an_atalp_model(when, images, tmp_path):
    import atalp_keras as ak

    model = ak.ATALPModel(_tiny_classifier(), stage_layers=[])
    model.compile("sgd", method="pat", attack=ak.PGDAttack(0.1, 0.05, 1), eval_attack=None)
    if when == "after_fit":
        model.fit(images, np.arange(5) % 3, verbose=0)
    model.export(str(tmp_path / "k"), verbose=False)
    serve = tf.saved_model.load(str(tmp_path / "k")).signatures["serving_default"]
    out = next(iter(serve(tf.constant(images)).values()))
    np.testing.assert_allclose(out.numpy(), model.predict(images, verbose=0), atol=1e-5)


def test_export_saved_model_is_the_package_exporter():
    import atalp_keras.export

    assert atalp_keras.export.export_saved_model is export_saved_model

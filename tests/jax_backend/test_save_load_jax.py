"""Models cross between the backends: a ``.keras`` classifier (alone, and
inside a saved ``ATALPModel``) written under JAX loads and predicts the same
under TensorFlow, and the reverse; a JAX-trained classifier exports for TF
Serving and the evaluation reads the export; the same attack on the same
weights gives the same adversarial examples on both backends.

TensorFlow runs in one subprocess (`tensorflow_side`, a module fixture):
Keras picks its backend once per process.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import atalp_keras as ak
from atalp_keras.attacks import PGDAttack

N = 200
EPS = 0.1
PGD = dict(eps=EPS, step_size=0.025, num_steps=10, random_start=False)

# What TensorFlow does with the JAX side's files, in FOLDER (argv[1]): writes
# tf_results.npz and, for the reverse direction, tf_classifier.keras and
# tf_model.keras (a TF-trained classifier and an ATALPModel holding it).
TENSORFLOW_SIDE = """
import json, os, sys
import keras, numpy as np
assert keras.backend.backend() == "tensorflow"
import atalp_keras as ak
from atalp_keras import export
from atalp_keras.attacks import PGDAttack, predict_logits
from atalp_keras.evaluation.inputs import load_model_for_eval

folder = sys.argv[1]
path = lambda name: os.path.join(folder, name)
data = np.load(path("data.npz"))
x, y, x_train, y_train = data["x"], data["y"], data["x_train"], data["y_train"]
pgd = json.loads(data["pgd"].item())
out = {}

classifier = ak.load_model(path("jax_classifier.keras"))
out["classifier"] = classifier.predict(x, verbose=0)
out["model_classifier"] = ak.load_model(path("jax_model.keras")).classifier.predict(x, verbose=0)
out["x_adv"] = PGDAttack(**pgd).perturb(classifier, x, y)

served = export.export_saved_model(classifier, path("served"), metadata={"dataset": "digits"})
evaluated, metadata = load_model_for_eval(path("served"))
out["served"] = predict_logits(evaluated, x)
out["served_dataset"] = np.array(metadata.get("dataset", ""))
out["served_x_adv"] = PGDAttack(**pgd).perturb(evaluated, x, y)

keras.utils.set_random_seed(1)
trained = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
trained.compile(keras.optimizers.Adam(3e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
trained.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
trained.save(path("tf_classifier.keras"))
ak.ATALPModel(trained).save(path("tf_model.keras"))
out["tf_classifier"] = trained.predict(x, verbose=0)
np.savez(path("tf_results.npz"), **out)
"""


def _run_tensorflow(folder):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", TENSORFLOW_SIDE, str(folder)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(folder / "tf_results.npz"))


@pytest.fixture(scope="module")
def jax_side(digits, tmp_path_factory):
    """A tiny ResNet (fused BatchNorm layers) trained under JAX, saved alone and
    in an ATALPModel, with its predictions and PGD examples under JAX."""
    x_train, y_train, x_test, y_test = digits
    folder = tmp_path_factory.mktemp("backends")
    keras.utils.set_random_seed(0)
    classifier = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    classifier.compile(keras.optimizers.Adam(3e-3),
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    classifier.save(folder / "jax_classifier.keras")
    ak.ATALPModel(classifier).save(folder / "jax_model.keras")
    x, y = x_test[:N], y_test[:N]
    np.savez(folder / "data.npz", x=x, y=y, x_train=x_train[:512], y_train=y_train[:512],
             pgd=np.array(json.dumps(PGD)))
    return dict(folder=folder, classifier=classifier, x=x, y=y,
                logits=classifier.predict(x, verbose=0),
                x_adv=PGDAttack(**PGD).perturb(classifier, x, y))


@pytest.fixture(scope="module")
def tensorflow_side(jax_side):
    return _run_tensorflow(jax_side["folder"])


def _same_logits(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_jax_saved_classifiers_predict_the_same_under_tensorflow(jax_side, tensorflow_side):
    # Trained, so the BatchNorm statistics are not their initial values.
    moving = jax_side["classifier"].get_layer("conv1_bn").moving_variance.numpy()
    assert not np.allclose(moving, 1.0)
    _same_logits(tensorflow_side["classifier"], jax_side["logits"])
    _same_logits(tensorflow_side["model_classifier"], jax_side["logits"])


def test_tensorflow_saved_classifiers_predict_the_same_under_jax(jax_side, tensorflow_side):
    folder, x = jax_side["folder"], jax_side["x"]
    expected = tensorflow_side["tf_classifier"]
    classifier = ak.load_model(folder / "tf_classifier.keras")
    _same_logits(classifier.predict(x, verbose=0), expected)
    model = ak.load_model(folder / "tf_model.keras")
    assert isinstance(model, ak.ATALPModel)
    _same_logits(model.classifier.predict(x, verbose=0), expected)


def test_a_jax_trained_classifier_serves_and_evaluates_under_tensorflow(jax_side,
                                                                        tensorflow_side):
    assert (jax_side["folder"] / "served" / "1" / "saved_model.pb").is_file()
    assert str(tensorflow_side["served_dataset"]) == "digits"
    _same_logits(tensorflow_side["served"], jax_side["logits"])
    # The evaluation attacks the SavedModel as it attacks the .keras file.
    np.testing.assert_allclose(tensorflow_side["served_x_adv"], tensorflow_side["x_adv"],
                               atol=1e-6)


def test_pgd_agrees_across_backends(jax_side, tensorflow_side):
    x, y, classifier = jax_side["x"], jax_side["y"], jax_side["classifier"]
    x_jax, x_tf = jax_side["x_adv"], tensorflow_side["x_adv"]
    for x_adv in (x_jax, x_tf):
        assert np.abs(x_adv - x).max() <= EPS + 1e-6
    robust_jax = np.argmax(classifier.predict(x_jax, verbose=0), -1) == y
    robust_tf = np.argmax(classifier.predict(x_tf, verbose=0), -1) == y
    clean = np.argmax(jax_side["logits"], -1) == y
    assert robust_jax.mean() < clean.mean() - 0.2  # the attack did something
    # Within binomial noise: three standard errors of a difference of two
    # accuracies on N points.
    p = (robust_jax.mean() + robust_tf.mean()) / 2
    assert abs(robust_jax.mean() - robust_tf.mean()) <= 3 * np.sqrt(2 * p * (1 - p) / N) + 1e-9
    # And nearly the same images: sign steps only differ where a gradient
    # component is within float noise of zero.
    same_pixel = np.isclose(x_jax, x_tf, atol=1e-5).mean()
    assert same_pixel > 0.98, same_pixel
    assert (robust_jax == robust_tf).mean() >= 0.97

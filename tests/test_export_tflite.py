"""A new user's path from a trained ATALPModel to serving, outside the package.

Both exports (the package's versioned `export_saved_model` and Keras'
`model.export`) are loaded in a fresh interpreter that never imports
atalp_keras (`tf.saved_model.load` only), then converted to TFLite with the
default converter (built-in ops only, no TF Select) and run with the TFLite
interpreter. Every output must equal what `predict` returns in this process.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import atalp_keras as ak
from atalp_keras.export import export_saved_model

# Run in a child process: it must not import atalp_keras (checked there), so
# what it reads is the export alone.
_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    request = json.loads(sys.argv[1])
    images = np.load(request["images"])
    report = {}
    for name, path in request["exports"].items():
        signature = tf.saved_model.load(path).signatures["serving_default"]
        served = {key: value.numpy() for key, value in signature(images=tf.constant(images)).items()}
        converter = tf.lite.TFLiteConverter.from_saved_model(path)
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # Reported to the test, which fails on it.
            lines = str(error).splitlines()
            named = [line for line in lines if "TF Select ops" in line]
            report[name] = {"conversion_error": (named or lines[-1:])[0][:500]}
            np.savez(request["out"] + name + ".npz", **served)
            continue
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        runner = interpreter.get_signature_runner("serving_default")
        lite = runner(images=images)
        np.savez(request["out"] + name + ".npz", **served,
                 **{"tflite_" + key: value for key, value in lite.items()})
        report[name] = {"tflite_outputs": sorted(lite),
                        "tflite_inputs": interpreter.get_signature_list()["serving_default"]["inputs"]}
    report["atalp_modules"] = sorted(m for m in sys.modules if m.startswith("atalp_keras"))
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def trained(digits):
    """A tiny ResNet trained one epoch of at_alp (PGD-1) on 64 digits."""
    x, y = digits[0][:64], digits[1][:64]
    keras.utils.set_random_seed(0)
    model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4)))
    model.compile(keras.optimizers.Adam(1e-2), method="at_alp",
                  attack=ak.PGDAttack(0.2, 0.1, 1, seed=0), eval_attack=None)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def fresh_process(trained, digits, tmp_path_factory):
    """Both exports read back (and through TFLite) by a process without the package."""
    tmp = tmp_path_factory.mktemp("served")
    images = digits[2][:12]
    np.save(tmp / "images.npy", images)
    exports = {
        "package": export_saved_model(trained, str(tmp / "versions")),
        "keras": str(tmp / "keras_export"),
    }
    trained.export(exports["keras"], verbose=False)
    request = {"images": str(tmp / "images.npy"), "exports": exports, "out": str(tmp) + "/"}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)  # Nothing that could make atalp_keras importable by accident.
    result = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(request)],
                            capture_output=True, text=True, env=env, cwd=str(tmp), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    outputs = {name: dict(np.load(str(tmp / f"{name}.npz"))) for name in exports}
    return report, outputs, trained.predict(images, verbose=0)


def test_the_child_never_imported_the_package(fresh_process):
    report, _, _ = fresh_process
    assert report["atalp_modules"] == []


def test_package_export_served_without_the_package_equals_predict(fresh_process):
    _, outputs, logits = fresh_process
    served = outputs["package"]
    np.testing.assert_allclose(served["logits"], logits, atol=1e-5)
    np.testing.assert_allclose(served["probabilities"],
                               keras.ops.convert_to_numpy(keras.ops.softmax(logits)), atol=1e-5)
    np.testing.assert_array_equal(served["classes"], logits.argmax(-1))
    assert served["classes"].dtype == np.int64


def test_keras_export_served_without_the_package_equals_predict(fresh_process):
    _, outputs, logits = fresh_process
    (served,) = [v for k, v in outputs["keras"].items() if not k.startswith("tflite_")]
    np.testing.assert_allclose(served, logits, atol=1e-5)


def test_package_export_converts_to_tflite_with_builtin_ops_and_matches_predict(fresh_process):
    report, outputs, logits = fresh_process
    # The default converter allows TFLite's built-in ops only: an op that needs
    # TF Select (ops.argmax lowered to tf.BitwiseAnd did) fails the conversion.
    assert "conversion_error" not in report["package"], report["package"]
    assert report["package"]["tflite_inputs"] == ["images"]
    assert report["package"]["tflite_outputs"] == ["classes", "logits", "probabilities"]
    lite = outputs["package"]
    np.testing.assert_allclose(lite["tflite_logits"], logits, atol=1e-4)
    np.testing.assert_allclose(lite["tflite_probabilities"],
                               keras.ops.convert_to_numpy(keras.ops.softmax(logits)), atol=1e-5)
    np.testing.assert_array_equal(lite["tflite_classes"], logits.argmax(-1))


def test_keras_export_converts_to_tflite_and_matches_predict(fresh_process):
    report, outputs, logits = fresh_process
    assert "conversion_error" not in report["keras"], report["keras"]
    (lite,) = [v for k, v in outputs["keras"].items() if k.startswith("tflite_")]
    np.testing.assert_allclose(lite, logits, atol=1e-4)

"""The package's import surface: lazy names, and loading saved models."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600)


def test_load_model_registers_the_package_classes_in_a_fresh_process(tmp_path):
    path = str(tmp_path / "model.keras")
    save = _run(
        "import keras, numpy as np, atalp_keras as ak\n"
        "clf = ak.tiny_resnet((8, 8, 1), 3, widths=(2, 2, 2, 2))\n"
        "m = ak.ATALPModel(clf)\n"
        "m.compile(keras.optimizers.SGD(0.1), method='alp',"
        " attack=ak.PGDAttack(eps=0.1, num_steps=1))\n"
        "m.fit(np.random.rand(8, 8, 8, 1).astype('float32'), np.arange(8) % 3, epochs=1,"
        " verbose=0)\n"
        f"m.save({path!r})\n")
    assert save.returncode == 0, save.stderr
    load = _run(
        "import atalp_keras as ak, sys\n"
        "assert 'tensorflow' not in sys.modules\n"
        f"m = ak.load_model({path!r})\n"
        "print(type(m).__name__, m.method)\n")
    assert load.returncode == 0, load.stderr
    assert load.stdout.split() == ["ATALPModel", "alp"]

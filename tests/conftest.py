"""Shared fixtures: the real digits data and one small undefended model."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


# The bench's modules live in bench/speedlib (bench/ is not a package). This
# lives here, not in a tests/bench/conftest.py: a second top-level module named
# conftest would shadow this one for `from conftest import ...`.
_BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, skipped unless --runslow")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow; pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def digits():
    """sklearn's 8x8 digits in [0, 1]: (x_train, y_train, x_test, y_test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0)
    return x_train, y_train, x_test, y_test


def small_cnn(input_shape=(8, 8, 1), num_classes=10, seed=0):
    """A plain logits CNN (about 5k weights) with no defense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def undefended_model(digits):
    """small_cnn trained normally on digits (about 95% clean test accuracy)."""
    x_train, y_train, _, _ = digits
    model = small_cnn()
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=30, batch_size=64, verbose=0)
    return model


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def assert_trained_alike(weights, other_weights, init):
    """Two trainings from ``init`` ended at the same weights (rtol 1e-4), and
    they moved: equal weights that never left ``init`` would prove nothing."""
    changed = False
    for a, b, start in zip(weights, other_weights, init, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        changed = changed or not np.allclose(a, start)
    assert changed, "neither training changed a weight"

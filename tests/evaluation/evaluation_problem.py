"""The tiny problem the evaluation tests share: an untrained digits-shaped
CNN on random images, labelled by its own predictions except four mistakes."""

import keras
import numpy as np
import pytest

from conftest import small_cnn


@pytest.fixture(scope="module")
def tiny_problem():
    keras.utils.set_random_seed(0)
    model = small_cnn()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(24, 8, 8, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), -1).astype("int32")
    y[:4] = (y[:4] + 1) % 10  # Four clean mistakes.
    return model, x, y

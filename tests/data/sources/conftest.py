"""Fixtures of the source tests."""

import numpy as np
import pytest

from data.sources.files import write_idx


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.RandomState(0)
    x_train = rng.randint(0, 256, (10, 4, 5)).astype(np.uint8)
    x_test = rng.randint(0, 256, (4, 4, 5)).astype(np.uint8)
    y_train = np.arange(10, dtype=np.uint8) % 3
    y_test = np.array([2, 1, 0, 1], np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x803, x_train, True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x801, y_train, True)
    write_idx(tmp_path / "test-images-idx3-ubyte", 0x803, x_test, False)
    write_idx(tmp_path / "test-labels-idx1-ubyte", 0x801, y_test, False)
    return tmp_path, (x_train, y_train, x_test, y_test)

"""Tests of the ``idx:`` source: MNIST-format IDX files, gzipped or plain."""

import os

import numpy as np
import pytest

from atalp_keras.data import load_dataset, to_numpy
from atalp_keras.errors import UsageError
from data.sources.files import write_idx as _write_idx


def test_idx_gzipped_and_plain(idx_dir):
    path, (x_train, y_train, x_test, y_test) = idx_dir
    info = load_dataset(f"idx:{path}")
    assert (info.num_train, info.num_test, info.num_classes) == (10, 4, 3)
    assert info.input_shape == (4, 5, 1)
    x, y = to_numpy(info.train)
    np.testing.assert_array_equal(x[..., 0], x_train / np.float32(255))
    np.testing.assert_array_equal(y, y_train)
    x, y = to_numpy(info.test)
    np.testing.assert_array_equal(x[..., 0], x_test / np.float32(255))
    assert y.tolist() == [2, 1, 0, 1] and y.dtype == np.int32


def test_idx_errors(idx_dir):
    path, (x_train, y_train, _, _) = idx_dir
    # Labels written where images belong: wrong magic, received vs expected.
    _write_idx(path / "train-images-idx3-ubyte.gz", 0x801, y_train, True)
    with pytest.raises(ValueError) as error:
        load_dataset(f"idx:{path}")
    assert "Received: 0x00000801, expected: 0x00000803" in str(error.value)

    _write_idx(path / "train-images-idx3-ubyte.gz", 0x803, x_train[:7], True)
    with pytest.raises(ValueError, match="7 images .* but 10 labels"):
        load_dataset(f"idx:{path}")

    _write_idx(path / "train-images-idx3-ubyte.gz", 0x803, x_train, True)
    os.remove(path / "test-labels-idx1-ubyte")
    with pytest.raises(ValueError) as error:
        load_dataset(f"idx:{path}")
    message = str(error.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert "test-labels-idx1-ubyte" in message

    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(f"idx:{path / 'missing'}")


def test_idx_with_one_class_is_refused(idx_dir):
    path, (x_train, _, x_test, _) = idx_dir
    _write_idx(path / "train-labels-idx1-ubyte.gz", 0x801, np.zeros(10, np.uint8), True)
    _write_idx(path / "test-labels-idx1-ubyte", 0x801, np.zeros(4, np.uint8), False)
    with pytest.raises(UsageError, match=r"has 1 class \(0\); a classifier needs at least 2"):
        load_dataset(f"idx:{path}")


def test_idx_errors_are_usage_errors(idx_dir):
    path, _ = idx_dir
    os.remove(path / "test-images-idx3-ubyte")
    with pytest.raises(UsageError, match="No IDX images file for 't10k'"):
        load_dataset(f"idx:{path}")

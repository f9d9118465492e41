"""Tests of the ``fashion_mnist`` source.

Most tests write small IDX files in Fashion-MNIST's layout; one reads the real
files where ``apt-get install -y dataset-fashion-mnist`` put them (.ci/run
installs them).
"""

import os

import numpy as np
import pytest

from atalp_keras.data import load_dataset, to_numpy
from atalp_keras.data.sources import fashion_mnist
from atalp_keras.errors import UsageError
from data.sources.files import write_idx

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
               "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _write_fashion(folder, num_train=12, num_test=5, compress=True, size=28):
    """Fashion-MNIST's four files (names as distributed), random bytes."""
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, count in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        ext = ".gz" if compress else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", 0x803, images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", 0x801, labels, compress)
        arrays[prefix] = images, labels
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_reads_the_files_in_data_dir(tmp_path, compress):
    arrays = _write_fashion(tmp_path, compress=compress)
    info = load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert (info.name, info.num_classes, info.input_shape) == ("fashion_mnist", 10, (28, 28, 1))
    assert info.class_names == CLASS_NAMES
    assert (info.num_train, info.num_test) == (12, 5)
    x, y = to_numpy(info.test)
    np.testing.assert_array_equal(x[..., 0], arrays["t10k"][0] / np.float32(255))
    np.testing.assert_array_equal(y, arrays["t10k"][1])
    assert x.dtype == np.float32 and y.dtype == np.int32
    x, _ = to_numpy(load_dataset("fashion_mnist", data_dir=str(tmp_path), image_size=14).train)
    assert x.shape == (12, 14, 14, 1)


def test_without_data_dir_reads_the_installed_folder(tmp_path, monkeypatch):
    _write_fashion(tmp_path, num_train=3, num_test=2)
    monkeypatch.setattr(fashion_mnist, "INSTALLED_DIR", str(tmp_path))
    info = load_dataset("fashion_mnist")
    assert (info.num_train, info.num_test) == (3, 2)


def test_missing_files_say_how_to_install_them(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "INSTALLED_DIR", str(tmp_path / "absent"))
    with pytest.raises(UsageError) as error:
        load_dataset("fashion_mnist")
    message = str(error.value)
    assert "\n" not in message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "--data_dir" in message and "train-images-idx3-ubyte[.gz]" in message
    assert "Received: dataset='fashion_mnist', data_dir=None" in message

    _write_fashion(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(UsageError) as error:
        load_dataset("fashion_mnist", data_dir=str(tmp_path))
    message = str(error.value)
    assert "no t10k-labels-idx1-ubyte[.gz]" in message and "(--data_dir)" in message
    assert "apt-get install -y dataset-fashion-mnist" in message


def test_other_idx_data_is_not_taken_for_fashion_mnist(tmp_path):
    _write_fashion(tmp_path, size=8)
    with pytest.raises(UsageError, match=r"not Fashion-MNIST.*images of 8x8.*idx:"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path))
    # The same files stay readable as plain IDX data.
    info = load_dataset(f"idx:{tmp_path}")
    assert (info.input_shape, info.num_classes) == ((8, 8, 1), 10)


# Reading all 70,000 images takes a few seconds. CI installs the package and
# sets ATALP_REQUIRE_FASHION_MNIST=1, so there a missing install fails.
@pytest.mark.skipif(not os.path.isdir(fashion_mnist.INSTALLED_DIR)
                    and os.environ.get("ATALP_REQUIRE_FASHION_MNIST") != "1",
                    reason="Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")
def test_the_installed_files_are_the_official_split():
    info = load_dataset("fashion_mnist")
    assert (info.num_train, info.num_test, info.input_shape) == (60_000, 10_000, (28, 28, 1))
    x_test, y_test = to_numpy(info.test)
    # The official test set: 1,000 images of each class.
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert x_test.min() == 0.0 and x_test.max() == 1.0
    assert y_test[:5].tolist() == [9, 2, 1, 1, 6]  # ankle boot, pullover, trouser x2, shirt
    _, y_train = to_numpy(info.train)
    assert np.bincount(y_train).tolist() == [6000] * 10

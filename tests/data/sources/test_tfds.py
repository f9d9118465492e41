"""Tests of the ``tfds:`` source on tiny TFDS datasets prepared offline here."""

import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.data import load_dataset, to_numpy


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    import tensorflow_datasets as tfds

    class SupervisedBuilder(tfds.dataset_builders.AdhocBuilder,
                            skip_registration=True):
        """An adhoc builder that declares (image, label) supervised keys."""

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=self._feature_spec,
                supervised_keys=("image", "label"), disable_shuffling=True)

    root = str(tmp_path_factory.mktemp("tfds"))
    gray = (np.arange(18 * 36, dtype=np.int64) % 256).astype(np.uint8)
    gray = gray.reshape(18, 6, 6, 1)
    labels = np.arange(18) % 3

    def split(x, y):
        return tf.data.Dataset.from_tensor_slices({"image": x, "label": y})

    builder = SupervisedBuilder(
        name="atalp_tiny_gray", version="1.0.0", data_dir=root,
        split_datasets={"train": split(gray[:12], labels[:12]),
                        "test": split(gray[12:], labels[12:])},
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(6, 6, 1)),
            "label": tfds.features.ClassLabel(names=["x", "y", "z"]),
        }),
        disable_shuffling=True)
    builder.download_and_prepare()

    rgb = np.random.RandomState(1).randint(0, 256, (20, 5, 5, 3)).astype(np.uint8)
    tfds.dataset_builders.store_as_tfds_dataset(
        name="atalp_tiny_rgb", version="1.0.0", data_dir=root,
        split_datasets={"train": split(rgb, np.arange(20) % 4)},
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(5, 5, 3)),
            "label": tfds.features.ClassLabel(num_classes=4),
        }),
        disable_shuffling=True)
    return root, gray, labels, rgb


def test_tfds_train_and_test_splits(tfds_dir):
    root, gray, labels, _ = tfds_dir
    info = load_dataset("tfds:atalp_tiny_gray", data_dir=root)
    assert (info.name, info.num_classes, info.class_names) == (
        "atalp_tiny_gray", 3, ["x", "y", "z"])
    assert (info.num_train, info.num_test, info.input_shape) == (12, 6, (6, 6, 1))
    x, y = to_numpy(info.test)
    np.testing.assert_array_equal(x, gray[12:] / np.float32(255))
    np.testing.assert_array_equal(y, labels[12:])
    assert y.dtype == np.int32 and x.dtype == np.float32

    info = load_dataset("tfds:atalp_tiny_gray:1.0.0:test[:2]", data_dir=root,
                        image_size=(3, 3))
    assert (info.num_train, info.num_test, info.input_shape) == (12, 2, (3, 3, 1))
    x, _ = to_numpy(info.test)
    assert x.shape == (2, 3, 3, 1)


def test_tfds_train_only_is_split_by_fraction(tfds_dir):
    root, _, _, rgb = tfds_dir
    info = load_dataset("tfds:atalp_tiny_rgb", data_dir=root, test_fraction=0.25)
    assert (info.num_train, info.num_test, info.num_classes) == (15, 5, 4)
    assert info.input_shape == (5, 5, 3)
    x, y = to_numpy(info.test)
    np.testing.assert_array_equal(x, rgb[15:] / np.float32(255))
    assert y.tolist() == [3, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="overlap the training split"):
        load_dataset("tfds:atalp_tiny_rgb:train[50%:]", data_dir=root)


def test_tfds_errors_say_prepare_in_data_dir(tfds_dir, tmp_path):
    root = tfds_dir[0]
    with pytest.raises(ValueError) as error:
        load_dataset("tfds:atalp_no_such_set", data_dir=root)
    message = str(error.value)
    assert "'atalp_no_such_set' was not found" in message
    assert "--data_dir" in message and "dataset='tfds:atalp_no_such_set'" in message
    # A registered dataset that was never prepared must not try the network.
    with pytest.raises(ValueError, match="'mnist' is not prepared") as error:
        load_dataset("tfds:mnist", data_dir=str(tmp_path))
    assert "no network" in str(error.value)
    with pytest.raises(ValueError, match="Invalid split"):
        load_dataset("tfds:atalp_tiny_gray:bogus", data_dir=root)

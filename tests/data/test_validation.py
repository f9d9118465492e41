"""Tests of the shared validator: images, labels, class counts, tf.data specs."""

import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.data import (check_dataset, check_images, check_labels, check_num_classes,
                              validate_arrays)
from atalp_keras.errors import UsageError


def test_validate_arrays_accepts_and_converts():
    x, y = validate_arrays(np.zeros((2, 3, 3, 1)), [0.0, 2.0], num_classes=3,
                           input_shape=(3, 3, 1))
    assert x.dtype == np.float32 and y.dtype == np.int32 and y.tolist() == [0, 2]


@pytest.mark.parametrize("x, y, kwargs, words", [
    (np.zeros((2, 3, 3)), [0, 1], {}, ["rank 4", "x[..., None]", "x.shape=(2, 3, 3)"]),
    (np.zeros((2, 3, 3, 1)), [0, 1], {"input_shape": (8, 8, 1)},
     ["(N, 8, 8, 1)", "x.shape=(2, 3, 3, 1)"]),
    (np.array([np.nan, np.inf, 0.5, 0.1]).reshape(1, 2, 2, 1), [0], {},
     ["2 NaN or infinite"]),
    (np.full((1, 2, 2, 1), 255.0), [0], {}, ["min=255", "max=255", "divide by 255"]),
    (np.full((1, 2, 2, 1), -0.5), [0], {}, ["min=-0.5"]),
    (np.zeros((2, 2, 2, 1)), [0, 10], {"num_classes": 10}, ["[0, 10)", "label of 10"]),
    (np.zeros((2, 2, 2, 1)), [0, -1], {}, ["label of -1"]),
    (np.zeros((2, 2, 2, 1)), [0, 1.5], {}, ["non-integer label: 1.5"]),
    (np.zeros((2, 2, 2, 1)), np.eye(2), {}, ["One-hot", "y.shape=(2, 2)"]),
    (np.zeros((2, 2, 2, 1)), [0], {}, ["2 images and 1 labels"]),
])
def test_validate_arrays_errors(x, y, kwargs, words):
    with pytest.raises(ValueError) as error:
        validate_arrays(x, y, **kwargs)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("x, words", [
    (np.full((1, 2, 2, 1), 200, np.uint8), ["look like 0-255 pixel values", "x / 255.0"]),
    (np.full((1, 2, 2, 1), 4000.0), ["max=4000", "Scale them to [0, 1]"]),
    (np.full((1, 2, 2, 1), -1.0), ["look normalised", "inside the model"]),
    (None, ["No images given", "x_adv=None"]),
    (np.array([["a"]]), ["must be numeric", "dtype <U1"]),
])
def test_check_images_hints_and_names_the_argument(x, words):
    with pytest.raises(UsageError) as error:
        check_images(x, name="x_adv")
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_check_images_returns_float32_and_knows_the_input_shape():
    x = check_images(np.ones((2, 4, 4, 3), np.float64), input_shape=(4, 4, 3))
    assert x.dtype == np.float32 and x.shape == (2, 4, 4, 3)
    with pytest.raises(UsageError) as error:
        check_images(np.zeros((2, 3, 4, 4)), input_shape=(4, 4, 3))
    assert "channels-first (NCHW); use np.transpose(x, (0, 2, 3, 1))" in str(error.value)


def test_one_hot_labels_are_refused_in_one_line_without_the_array():
    one_hot = np.eye(10, dtype=np.float32)[np.arange(50) % 10]
    with pytest.raises(UsageError) as error:
        check_labels(one_hot, num_classes=10, name="y_test")
    message = str(error.value)
    assert message == ("Labels must have shape (N,). One-hot labels? Use "
                       "y.argmax(axis=-1). Received: y_test.shape=(50, 10)")
    with pytest.raises(UsageError, match=r"Use y\.reshape\(-1\)\. Received: y\.shape=\(3, 1\)"):
        check_labels(np.zeros((3, 1), np.int32))
    with pytest.raises(UsageError, match="No labels given"):
        check_labels(None)
    with pytest.raises(UsageError, match="dtype <U1"):
        check_labels(np.array(["a", "b"]))


def test_fewer_than_two_classes_are_refused():
    with pytest.raises(UsageError, match=r"at least 2 classes\. Received: num_classes=1"):
        validate_arrays(np.zeros((2, 2, 2, 1)), [0, 0], num_classes=1)
    with pytest.raises(UsageError, match="num_classes=True"):
        check_num_classes(True)
    assert check_num_classes(np.int64(2)) == 2


def _batched(y, x=None, batch=2):
    x = np.zeros((len(y), 4, 4, 1), np.float32) if x is None else x
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def test_column_labels_are_refused_through_tf_data_as_through_numpy():
    column = np.zeros((4, 1), np.int32)
    with pytest.raises(UsageError) as numpy_error:
        validate_arrays(np.zeros((4, 4, 4, 1)), column)
    with pytest.raises(UsageError) as data_error:
        check_dataset(_batched(column), num_classes=10)
    for message in (str(numpy_error.value), str(data_error.value)):
        assert message.startswith("Labels") and "must have shape (" in message
        assert "reshape" in message and "\n" not in message
    assert "label shape (None, 1)" in str(data_error.value)
    with pytest.raises(UsageError, match="One-hot labels"):
        check_dataset(_batched(np.eye(4, dtype=np.float32)))


def test_check_dataset_structure_rank_shape_and_emptiness():
    good = _batched(np.arange(4, dtype=np.int32))
    assert check_dataset(good, num_classes=4, input_shape=(4, 4, 1)) is good
    weighted = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 4, 4, 1)), np.zeros(4, np.int32), np.ones(4))).batch(2)
    check_dataset(weighted)
    with pytest.raises(UsageError, match="is empty: it yields no batches"):
        check_dataset(good.take(0))
    with pytest.raises(UsageError, match=r"\(batch, H, W, C\).*image shape \(None, 4, 4\)"):
        check_dataset(_batched(np.arange(4), x=np.zeros((4, 4, 4), np.float32)))
    with pytest.raises(UsageError, match=r"\(H, W, C\)=\(8, 8, 1\)"):
        check_dataset(good, input_shape=(8, 8, 1))
    with pytest.raises(UsageError, match="element_spec"):
        check_dataset(tf.data.Dataset.from_tensor_slices({"x": np.zeros((2, 4))}))
    with pytest.raises(UsageError, match="Received: train_data of type list"):
        check_dataset([1, 2], name="train_data")
    with pytest.raises(UsageError, match="at least 2 classes"):
        check_dataset(good, num_classes=1)
    with pytest.raises(UsageError, match="labels in dataset of dtype string"):
        check_dataset(_batched(np.array(["a", "b"])))

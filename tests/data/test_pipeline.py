"""Tests of batching (`make_pipeline`), `RandomPadCrop` and `to_numpy`."""

import numpy as np
import pytest
import tensorflow as tf

from atalp_keras import data
from atalp_keras.data import make_pipeline, to_numpy
from atalp_keras.errors import UsageError


def _indexed(n=10, size=(4, 4, 1)):
    """Images whose pixels all equal their index / 100; label = index."""
    x = np.tile(np.arange(n, dtype=np.float32)[:, None, None, None] / 100,
                (1,) + size)
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n, dtype=np.int32)))


def test_pipeline_batches_shuffles_and_repeats():
    ds = make_pipeline(_indexed(10), 4)
    assert [len(y) for _, y in ds] == [4, 4, 2]
    assert np.concatenate([y for _, y in ds]).tolist() == list(range(10))
    ds = make_pipeline(_indexed(10), 4, drop_remainder=True)
    assert [len(y) for _, y in ds] == [4, 4]

    ds = make_pipeline(_indexed(10), 10, shuffle=True, seed=3)
    epoch1 = next(iter(ds))[1].numpy()
    epoch2 = next(iter(ds))[1].numpy()
    again = next(iter(make_pipeline(_indexed(10), 10, shuffle=True, seed=3)))[1]
    assert sorted(epoch1.tolist()) == list(range(10))
    assert epoch1.tolist() != epoch2.tolist()  # reshuffled every epoch
    np.testing.assert_array_equal(epoch1, again.numpy())  # seeded

    ds = make_pipeline(_indexed(10), 4, repeat=True)
    assert len(list(ds.take(7))) == 7


def test_crop_augmentation_shifts_each_image_by_its_own_offset():
    x = np.ones((64, 8, 8, 1), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(64, np.int32)))
    batch = next(iter(make_pipeline(ds, 64, augment="crop", pad=2, seed=0)))[0]
    batch = batch.numpy()
    assert batch.shape == (64, 8, 8, 1)
    # Each image is the ones-square shifted by <= 2 px, zeros filling in.
    assert set(np.unique(batch)) <= {0.0, 1.0}
    rows = batch[:, :, :, 0].max(axis=2).sum(axis=1)  # rows still covered
    assert rows.min() >= 6 and np.any(batch[:, :, :, 0].sum(axis=(1, 2)) < 64)
    assert len({image.tobytes() for image in batch}) > 5  # not one batch crop


def test_flip_only_in_crop_flip():
    asymmetric = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) / 16
    x = np.repeat(asymmetric, 32, axis=0)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(32, np.int32)))
    crop = next(iter(make_pipeline(ds, 32, augment="crop", pad=0)))[0].numpy()
    np.testing.assert_array_equal(crop, x)  # pad 0 and no flip: identity
    flipped = next(iter(make_pipeline(ds, 32, augment="crop_flip", pad=0, seed=1)))[0]
    flipped = flipped.numpy()
    is_flipped = [np.array_equal(f, x[0][:, ::-1]) for f in flipped]
    is_same = [np.array_equal(f, x[0]) for f in flipped]
    assert all(a or b for a, b in zip(is_flipped, is_same))
    assert 0 < sum(is_flipped) < 32


def test_pipeline_argument_errors():
    with pytest.raises(ValueError, match="augment='flip'"):
        make_pipeline(_indexed(), 4, augment="flip")
    with pytest.raises(ValueError, match="batch_size=0"):
        make_pipeline(_indexed(), 0)
    with pytest.raises(ValueError, match="pad=-1"):
        data.RandomPadCrop(pad=-1)


def test_to_numpy_limit_and_empty():
    x, y = to_numpy(_indexed(10), limit=3)
    assert x.shape == (3, 4, 4, 1) and y.tolist() == [0, 1, 2]
    x, y = to_numpy(_indexed(10).take(0))
    assert x.shape == (0, 4, 4, 1) and y.shape == (0,)


def test_pipeline_refuses_labels_of_shape_one_per_example():
    x = np.zeros((4, 4, 4, 1), np.float32)
    column = tf.data.Dataset.from_tensor_slices((x, np.zeros((4, 1), np.int32)))
    with pytest.raises(UsageError) as error:
        make_pipeline(column, 2)
    message = str(error.value)
    assert "Labels in dataset must have shape () per example" in message
    assert "tf.reshape(y, [-1])" in message and "label shape (1,)" in message


def test_pipeline_refuses_batched_or_empty_data():
    with pytest.raises(UsageError, match=r"Is it batched already\?"):
        make_pipeline(_indexed(8).batch(4), 2)
    with pytest.raises(UsageError, match="dataset is empty: it yields no examples"):
        make_pipeline(_indexed(8).take(0), 2)
    with pytest.raises(UsageError, match="Received: dataset of type ndarray"):
        make_pipeline(np.zeros((2, 4, 4, 1)), 2)


def test_augmentation_keeps_sample_weights():
    x = np.ones((6, 8, 8, 1), np.float32)
    weights = np.linspace(0.0, 1.0, 6).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(6, np.int32), weights))
    images, labels, batch_weights = next(iter(make_pipeline(ds, 6, augment="crop", seed=0)))
    assert images.shape == (6, 8, 8, 1) and labels.shape == (6,)
    np.testing.assert_array_equal(batch_weights.numpy(), weights)

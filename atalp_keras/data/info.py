"""What every source returns: `DatasetInfo`, and the in-memory array path.

Every source yields the same thing: unbatched ``(image, label)`` pairs with the
image float32 in ``[0, 1]``, shape ``(H, W, C)`` (NHWC once batched), and the
label int32 in ``[0, K)``.
"""

from __future__ import annotations  # the tf.data annotations must not import TensorFlow

import dataclasses

import numpy as np
from atalp_keras.lazy import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A loaded dataset: unbatched train/test ``tf.data`` pipelines plus facts.

    Attributes:
        name: Short name of the dataset (``"digits"``, ``"fashion_mnist"``,
            the TFDS name, or the folder's base name).
        train: Unbatched ``tf.data.Dataset`` of ``(image, label)``; image
            float32 in ``[0, 1]`` with shape ``input_shape``, label int32.
        test: Same as ``train``, for the held-out split.
        num_classes: Number of classes ``K``; labels are in ``[0, K)``.
        input_shape: ``(H, W, C)`` of one image.
        class_names: ``K`` class names, index ``i`` names label ``i``.
        num_train: Number of training examples.
        num_test: Number of test examples.
    """

    name: str
    train: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple
    class_names: list
    num_train: int
    num_test: int


def images_to_float(images, scale, image_size):
    """Pixel arrays of scale ``scale`` -> float32 in [0, 1], resized."""
    images = tf.cast(images, tf.float32) / scale
    if image_size is not None and tuple(images.shape[-3:-1]) != image_size:
        images = tf.image.resize(images, image_size, method="bilinear",
                                 antialias=True)
        images = tf.clip_by_value(images, 0.0, 1.0)
    return images


def dataset_from_arrays(images, labels, scale, image_size):
    """An unbatched float32 [0, 1] dataset from raw pixel arrays in memory."""
    dataset = tf.data.Dataset.from_tensor_slices(
        (images, np.asarray(labels, np.int32)))
    return dataset.map(
        lambda image, label: (images_to_float(image, scale, image_size),
                              label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def info_from_arrays(name, train, test, scale, class_names, image_size=None):
    """A `DatasetInfo` over in-memory ``(pixels, labels)`` train/test pairs.

    Args:
        name: The dataset's short name.
        train: ``(pixels (N, H, W, C), labels (N,))`` of the training split.
        test: The same for the test split.
        scale: The full-scale pixel value (255 for bytes, 16 for digits).
        class_names: One name per class; their number is ``num_classes``.
        image_size: Optional ``(H, W)`` to resize to.
    """
    (x_train, y_train), (x_test, y_test) = train, test
    height, width = image_size or x_train.shape[1:3]
    return DatasetInfo(
        name=name,
        train=dataset_from_arrays(x_train, y_train, scale, image_size),
        test=dataset_from_arrays(x_test, y_test, scale, image_size),
        num_classes=len(class_names),
        input_shape=(int(height), int(width), int(x_train.shape[3])),
        class_names=list(class_names),
        num_train=len(y_train),
        num_test=len(y_test),
    )

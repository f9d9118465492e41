"""Batching for training and evaluation: `make_pipeline`, its per-image crop
augmentation `RandomPadCrop`, and `to_numpy` to materialise a dataset."""

import keras
import numpy as np
from atalp_keras.lazy import tensorflow as tf
from keras import ops

from atalp_keras.data.validation import check_dataset
from atalp_keras.errors import UsageError

_MAX_SHUFFLE_BUFFER = 10_000


def make_pipeline(dataset, batch_size, shuffle=False, augment=None, seed=0,
                  cache=True, drop_remainder=False, repeat=False, pad=None):
    """Batches an unbatched ``(image, label)`` dataset for training or eval.

    Order: cache -> shuffle -> repeat -> batch -> augment -> prefetch. The
    augmentation runs on whole batches, but every image gets its own crop
    offset and flip (Keras' ``RandomCrop`` would crop a whole batch at one
    offset).

    Args:
        dataset: Unbatched ``tf.data.Dataset`` of ``(image, label)``.
        batch_size: Examples per batch (the global batch under a strategy).
        shuffle: Shuffle with a buffer of the dataset size (at most 10,000),
            seeded, in a new order every epoch.
        augment: ``None``; ``"crop_flip"`` (zero-pad, random crop back to size,
            random horizontal flip: CIFAR-style); or ``"crop"`` (no flip, for
            digits/MNIST, where a mirrored digit is a different symbol).
        seed: Seed of the shuffle and of the augmentation.
        cache: Cache the decoded examples (in memory) after the first epoch.
        drop_remainder: Drop the last, smaller batch.
        repeat: Repeat forever (then ``fit`` needs ``steps_per_epoch``).
        pad: Pixels of zero padding before the random crop. ``None`` picks
            ``min(4, min(H, W) // 8)`` (at least 1): 4 for 32x32 images (the
            CIFAR standard), 3 for 28x28, 1 for 8x8 digits.

    Returns:
        A batched, prefetched ``tf.data.Dataset``.

    Raises:
        UsageError: If an argument is invalid, or the dataset is not
            unbatched ``(image, label)`` examples (see `check_dataset`: e.g.
            labels of shape ``(1,)`` per example, or a known-empty dataset).
    """
    check_dataset(dataset, batched=False)
    if (isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise UsageError(
            f"`batch_size` must be an integer >= 1. Received: "
            f"batch_size={batch_size!r}"
        )
    if augment not in (None, "crop_flip", "crop"):
        raise UsageError(
            "`augment` must be None, 'crop_flip' or 'crop'. Received: "
            f"augment={augment!r}"
        )
    if cache:
        dataset = dataset.cache()
    if shuffle:
        size = int(dataset.cardinality())
        buffer_size = _MAX_SHUFFLE_BUFFER if size < 0 else size
        buffer_size = max(1, min(buffer_size, _MAX_SHUFFLE_BUFFER))
        dataset = dataset.shuffle(buffer_size, seed=seed,
                                  reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    if augment is not None:
        dataset = _augment(dataset, augment, pad, seed)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _augment(dataset, augment, pad, seed):
    """Per-image random shift (and flip for ``crop_flip``) of batches."""
    image_spec = dataset.element_spec[0]
    height, width = image_spec.shape[1], image_spec.shape[2]
    if height is None or width is None:
        raise UsageError(
            "Augmentation needs images of a fixed size; pass image_size to "
            f"load_dataset. Received: image shape {image_spec.shape}"
        )
    if pad is None:
        pad = max(1, min(4, min(height, width) // 8))
    layers = [RandomPadCrop(pad, seed=seed)]
    if augment == "crop_flip":
        layers.append(keras.layers.RandomFlip(
            "horizontal", seed=None if seed is None else seed + 1))

    def apply(images, *rest):  # rest: labels [, sample weights]
        for layer in layers:
            images = layer(images, training=True)
        return (images,) + rest

    # Sequential map: the layers draw from stateful seed generators, so a
    # parallel map would make the crops depend on thread timing.
    dataset = dataset.map(apply)
    return dataset


class RandomPadCrop(keras.layers.Layer):
    """Zero-pads images and crops them back to size at a random offset.

    Unlike ``keras.layers.RandomCrop`` on a batch, each image gets its own
    offset. With ``pad=4`` on 32x32 images this is the standard CIFAR
    augmentation (shifts of -4..4 px in each direction, filled with zeros).

    Args:
        pad: Pixels of zero padding on each side; ``pad=0`` is the identity.
        seed: Optional int seeding the layer's ``keras.random.SeedGenerator``.
    """

    def __init__(self, pad=4, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) \
                or pad < 0:
            raise UsageError(
                f"`pad` must be an integer >= 0. Received: pad={pad!r}"
            )
        self.pad = int(pad)
        self.seed = seed
        self.padding = keras.layers.ZeroPadding2D(self.pad)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.padding.build(input_shape)

    def call(self, images, training=True):
        if not training or self.pad == 0:
            return images
        height, width = images.shape[1], images.shape[2]
        padded = self.padding(images)
        offsets = keras.random.randint(
            (ops.shape(images)[0], 2), 0, 2 * self.pad + 1,
            seed=self.seed_generator,
        )
        rows = offsets[:, :1] + ops.arange(height)[None, :]
        cols = offsets[:, 1:] + ops.arange(width)[None, :]
        cropped = ops.take_along_axis(padded, rows[:, :, None, None], axis=1)
        return ops.take_along_axis(cropped, cols[:, None, :, None], axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pad": self.pad, "seed": self.seed}


def to_numpy(dataset, limit=None):
    """Materialises an unbatched ``(image, label)`` dataset as numpy arrays.

    Args:
        dataset: Unbatched ``tf.data.Dataset`` of ``(image, label)``.
        limit: Keep only the first ``limit`` examples; ``None`` keeps all.

    Returns:
        ``(x, y)``: images ``(N, H, W, C)`` and labels ``(N,)`` as numpy arrays
        with the dataset's dtypes.
    """
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) \
                or limit < 0:
            raise UsageError(
                f"`limit` must be None or an integer >= 0. Received: "
                f"limit={limit!r}"
            )
        dataset = dataset.take(int(limit))
    image_spec, label_spec = dataset.element_spec
    xs, ys = [], []
    for x_batch, y_batch in dataset.batch(1024).as_numpy_iterator():
        xs.append(x_batch)
        ys.append(y_batch)
    if not xs:
        shape = tuple(d or 0 for d in image_spec.shape)
        return (np.zeros((0,) + shape, image_spec.dtype.as_numpy_dtype),
                np.zeros((0,), label_spec.dtype.as_numpy_dtype))
    return np.concatenate(xs), np.concatenate(ys)

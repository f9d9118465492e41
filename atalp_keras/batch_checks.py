"""Checks of what ``ATALPModel`` is fed: arrays up front, the first batch of a
``tf.data`` pipeline eagerly, every batch in the graph (cheap value asserts),
and the translation of a failed graph assert into one ``UsageError`` line.

Under JAX a jitted step has no asserts: every batch is checked on the host
before it enters the step (`host_checks`), with the same messages.
TensorFlow is imported only when a TensorFlow object is at hand.
"""

import contextlib
import re
import sys

import keras
import numpy as np
from keras import ops

from atalp_keras.data import validate_arrays
from atalp_keras.data.validation import check_images
from atalp_keras.errors import UsageError
from atalp_keras.lazy import tensorflow as tf

# Key of an evaluation batch's per-example mask of the examples the eval attack
# scores: ``(x, y, {ATTACK_MASK: m})``; the adversarial metrics weight example i
# by m[i] and a batch with no example marked skips the attack.
ATTACK_MASK = "attack_mask"

_NAN_TEXT = "Images contain NaN or inf pixels; count:"
_RANGE_TEXT = "Pixels must be in [0, 1] (divide 0-255 images by 255). Received min/max:"
_LABEL_TEXT = "Labels must be in [0, {}). Received min/max:"
_ASSERT = re.compile(r"assertion failed: (.*)")


def check_arrays(x, y, num_classes, image_shape):
    """Array checks before training: the shared `data.validate_arrays`.

    Returns:
        ``(x, y)`` as float32 / int32 numpy arrays.

    Raises:
        UsageError: on the first problem found.
    """
    return validate_arrays(x, y, num_classes, image_shape)


def check_first_batch(dataset, num_classes, image_shape, what="training"):
    """Checks the first batch of a ``tf.data.Dataset`` eagerly, like arrays.

    A mistake in the pipeline (0-255 pixels, (N, 1) labels, NaN) then costs one
    clear message before anything is traced; later batches are checked in the
    step. Anything but a ``tf.data.Dataset`` is left alone.

    Raises:
        UsageError: for an empty dataset, a batch without labels, or a batch
            failing `check_arrays`.
    """
    if not is_tf_dataset(dataset):
        return
    for element in dataset.take(1):
        x, y, third = keras.utils.unpack_x_y_sample_weight(element)
        if y is None:
            raise UsageError(
                f"The {what} dataset must yield (images, labels) batches. Received: "
                f"elements of structure {dataset.element_spec}")
        try:
            split_weights(third)
        except UsageError as error:
            raise UsageError(f"The {what} dataset: {error}") from None
        try:
            check_arrays(np.asarray(x), np.asarray(y), num_classes, image_shape)
        except UsageError as error:
            raise UsageError(f"First batch of the {what} dataset: {error}") from None
        return
    raise UsageError(
        f"The {what} dataset is empty: it yields no batch, so there is nothing to "
        "train or evaluate on.")


def check_prediction_input(x, image_shape):
    """`check_first_batch` for ``predict``: images only, labels optional.

    Numpy arrays are checked whole, a ``tf.data.Dataset`` by its first batch
    (images, or a tuple whose first element is the images); anything else is
    left to `graph_image_checks`.

    Raises:
        UsageError: for images `check_images` refuses or an empty dataset.
    """
    if isinstance(x, np.ndarray):
        check_images(x, "x", image_shape)
        return
    if not is_tf_dataset(x):
        return
    for element in x.take(1):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(element)
        try:
            check_images(np.asarray(images), "x", image_shape)
        except UsageError as error:
            raise UsageError(f"First batch of the prediction dataset: {error}") from None
        return
    raise UsageError("The prediction dataset is empty: it yields no batch, so there is "
                     "nothing to predict.")


def is_tf_dataset(value):
    """Whether ``value`` is a ``tf.data.Dataset`` (False without TensorFlow
    loaded: nothing can be one then)."""
    loaded = sys.modules.get("tensorflow")
    return loaded is not None and isinstance(value, loaded.data.Dataset)


@contextlib.contextmanager
def user_errors(what="training"):
    """Turns a failed in-graph input assert into one ``UsageError`` line."""
    try:
        yield
    except Exception as error:
        loaded = sys.modules.get("tensorflow")
        if loaded is None or not isinstance(error, loaded.errors.InvalidArgumentError):
            raise
        match = _ASSERT.search(error.message or "")
        known = (_NAN_TEXT, _RANGE_TEXT, _LABEL_TEXT.split("{")[0])
        if match is None or not any(text in match.group(1) for text in known):
            raise
        text = re.sub(r"\]\s*\[", " ", match.group(1).strip()).strip("[] ")
        raise UsageError(f"A batch of the {what} data is invalid: {text}") from None


def _rank(tensor):
    """The rank of a tensor, None when TensorFlow does not know it."""
    shape = tensor.shape
    return shape.rank if hasattr(shape, "rank") else len(shape)


def static_checks(x, y, image_shape, name):
    """Trace-time shape checks; returns ``x`` as float32 and ``y`` as int32."""
    if keras.backend.backend() == "tensorflow":
        x = tf.convert_to_tensor(x)
        y = None if y is None else tf.convert_to_tensor(y)
    else:
        x = ops.convert_to_tensor(x)
        y = None if y is None else ops.convert_to_tensor(y)
    if _rank(x) != 4 or tuple(x.shape[1:]) != image_shape:
        raise UsageError(
            f"Expected images of shape (batch, {', '.join(map(str, image_shape))}) "
            f"for classifier {name!r}. Received: shape {tuple(x.shape)}")
    if y is None:
        raise UsageError("ATALPModel needs labels: pass (images, labels). Received: y=None")
    if _rank(y) is None:
        # A retrace with relaxed shapes can lose the rank (TensorFlow): check it
        # at run time.
        tf.debugging.assert_rank(y, 1, message="Labels must have shape (batch,)")
        y = tf.reshape(y, [-1])
    if _rank(y) != 1:
        hint = " Use labels.reshape(-1)." if _rank(y) == 2 and y.shape[-1] == 1 \
            else " One-hot labels? Use labels.argmax(axis=-1)."
        raise UsageError(
            "Labels must be integer class ids of shape (batch,)." + hint +
            f" Received: labels of shape {tuple(y.shape)}")
    return ops.cast(x, "float32"), ops.cast(y, "int32")


def split_weights(third):
    """``(sample_weight, attack_mask)`` of a batch's third element: a sample
    weight, or a dict of ``"sample_weight"`` and/or `ATTACK_MASK` (a typo in a
    key would otherwise drop the weights unnoticed)."""
    if not isinstance(third, dict):
        return third, None
    if set(third) - {"sample_weight", ATTACK_MASK}:
        raise UsageError(
            "A batch's third element, when a dict, holds 'sample_weight' and/or "
            f"{ATTACK_MASK!r}. Received: keys {sorted(map(str, third))}")
    return third.get("sample_weight"), third.get(ATTACK_MASK)


def _pixel_asserts(x):
    finite = tf.reduce_all(tf.math.is_finite(x))
    return [
        tf.debugging.Assert(finite, [
            _NAN_TEXT, tf.reduce_sum(tf.cast(~tf.math.is_finite(x), "int32"))]),
        tf.debugging.Assert(
            tf.logical_or(~finite, tf.logical_and(tf.reduce_min(x) >= 0.0,
                                                  tf.reduce_max(x) <= 1.0)),
            [_RANGE_TEXT, tf.reduce_min(x), tf.reduce_max(x)]),
    ]


def graph_checks(x, y, num_classes):
    """Cheap run-time value checks: finite pixels in [0, 1], labels in [0, K)."""
    checks = _pixel_asserts(x) + [
        tf.debugging.Assert(
            tf.logical_and(tf.reduce_min(y) >= 0, tf.reduce_max(y) < num_classes),
            [_LABEL_TEXT.format(num_classes), tf.reduce_min(y), tf.reduce_max(y)]),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(x), tf.identity(y)


def graph_image_checks(x):
    """`graph_checks` of the pixels alone (``predict`` has no labels)."""
    with tf.control_dependencies(_pixel_asserts(x)):
        return tf.identity(x)


def _number(value):
    """A min/max as TensorFlow's assert prints it (``255``, ``0.5``, ``nan``)."""
    return np.format_float_positional(np.float32(value), trim="-")


def host_checks(x, y, num_classes, what):
    """`graph_checks` on the host, for backends without asserts in a step.

    Args:
        x: A batch of images (any array the batch arrives as).
        y: Its labels, or None (``predict``).
        num_classes: Labels must be in ``[0, num_classes)``.
        what: ``"training"``, ``"evaluation"`` or ``"prediction"``.

    Raises:
        UsageError: ``"A batch of the <what> data is invalid: ..."``, the
            message a failed graph assert becomes on TensorFlow.
    """
    problem = None
    x = np.asarray(x)
    if x.size:
        finite = np.isfinite(x)
        if not finite.all():
            problem = f"{_NAN_TEXT} {int(x.size - finite.sum())}"
        elif x.min() < 0.0 or x.max() > 1.0:
            problem = f"{_RANGE_TEXT} {_number(x.min())} {_number(x.max())}"
    if problem is None and y is not None:
        y = np.asarray(y)
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            problem = f"{_LABEL_TEXT.format(num_classes)} {y.min()} {y.max()}"
    if problem is not None:
        raise UsageError(f"A batch of the {what} data is invalid: {problem}")

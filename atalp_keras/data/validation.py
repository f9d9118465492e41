"""The one place that checks images and labels a user hands to the package.

Every entry point that takes user data (``ATALPModel.fit``/``evaluate``, the
eager attacks, the evaluation suite, `make_pipeline`) calls these functions, so
a mistake gets the same one-line `UsageError` wherever it enters:

- `check_images`: float pixels in ``[0, 1]`` (a hint when they look like
  0-255), finite, rank 4 NHWC, optionally of a given ``(H, W, C)``;
- `check_labels`: integer class ids of shape ``(N,)`` in ``[0, K)`` (one-hot
  and ``(N, 1)`` labels refused with the fix, never printing the array);
- `check_num_classes`: at least 2 classes;
- `validate_arrays`: images and labels together (same count);
- `check_dataset`: the static facts of a ``tf.data`` pipeline (element
  structure, image rank, label shape ``(batch,)``, not empty), so labels of
  shape ``(N, 1)`` are refused through ``tf.data`` as they are as numpy.

The pixel scale matters because attack budgets (``eps``) are given on it: a
0-255 image would silently turn ``eps=8/255`` into a 255x weaker attack.
"""

import numpy as np
from atalp_keras.lazy import tensorflow as tf

from atalp_keras.errors import UsageError


def check_images(x, name="x", input_shape=None):
    """Checks a batch of images and returns it as float32 numpy.

    Args:
        x: Images, shape ``(N, H, W, C)``, float in ``[0, 1]`` (numpy, a list
            or an eager tensor). Integer arrays are accepted if their values
            are in ``[0, 1]``.
        name: What to call ``x`` in messages (e.g. ``"x_adv"``).
        input_shape: If given, the ``(H, W, C)`` every image must have.

    Returns:
        ``x`` as a float32 numpy array (no copy when it already is one).

    Raises:
        UsageError: On the first problem (missing, non-numeric, wrong rank or
            shape, no images, NaN/inf pixels, pixels outside ``[0, 1]``).
    """
    if x is None:
        raise UsageError(f"No images given. Expected {name} of shape "
                         f"(N, H, W, C), float in [0, 1]. Received: {name}=None")
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise UsageError(f"Images must be numeric. Received: {name} of dtype "
                         f"{x.dtype}")
    _check_image_shape(x.shape, name, input_shape)
    if x.shape[0] == 0:
        raise UsageError(f"No images. Received: {name}.shape={x.shape}")
    x = x.astype(np.float32, copy=False)
    num_bad = int(np.count_nonzero(~np.isfinite(x)))
    if num_bad:
        raise UsageError(
            f"Images contain {num_bad} NaN or infinite pixel values out of "
            f"{x.size} in {name}. Expected finite values in [0, 1].")
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        raise UsageError(
            f"Pixel values must be in [0, 1]. Received: min={low:g}, "
            f"max={high:g} in {name}.{_range_hint(low, high)}")
    return x


def _check_image_shape(shape, name, input_shape):
    expected = "(N, H, W, C)" if input_shape is None else \
        f"(N, {', '.join(str(d) for d in input_shape)})"
    hint = ""
    if len(shape) == 3:
        hint = " For grayscale images add a channel axis: x[..., None]."
    elif len(shape) == 4 and _looks_channels_first(shape, input_shape):
        hint = (" They look channels-first (NCHW); use "
                "np.transpose(x, (0, 2, 3, 1)).")
    if len(shape) != 4:
        raise UsageError(f"Images must have rank 4 with shape {expected}."
                         f"{hint} Received: {name}.shape={shape}")
    if input_shape is not None and tuple(shape[1:]) != tuple(input_shape):
        raise UsageError(f"Images must have shape {expected}.{hint} "
                         f"Received: {name}.shape={shape}")


def _looks_channels_first(shape, input_shape):
    if input_shape is not None:
        height, width, channels = tuple(input_shape)
        return tuple(shape[1:]) == (channels, height, width)
    return shape[1] in (1, 3) and shape[3] > 4


def _range_hint(low, high):
    if high > 1.0 and high <= 255.0 and low >= 0.0:
        return (" They look like 0-255 pixel values: divide by 255 "
                "(x / 255.0).")
    if high > 255.0 and low >= 0.0:
        return " Scale them to [0, 1] first (divide by their full-scale value)."
    return (" They look normalised (mean/std or [-1, 1]); pass [0, 1] "
            "images and put the normalisation inside the model.")


def check_labels(y, num_classes=None, name="y", num_images=None):
    """Checks integer class labels and returns them as int32 numpy.

    Args:
        y: Class ids, shape ``(N,)``. Integer, or float holding whole numbers.
        num_classes: If given, labels must be in ``[0, num_classes)``, and
            ``num_classes`` must be at least 2.
        name: What to call ``y`` in messages.
        num_images: If given, the number ``N`` of images the labels belong to.

    Returns:
        ``y`` as an int32 numpy array.

    Raises:
        UsageError: On the first problem (missing, wrong shape such as one-hot
            or ``(N, 1)``, count differing from ``num_images``, non-integer or
            out-of-range values). Messages never print the array.
    """
    if num_classes is not None:
        check_num_classes(num_classes)
    if y is None:
        raise UsageError(f"No labels given. Expected integer class ids of "
                         f"shape (N,). Received: {name}=None")
    y = np.asarray(y)
    if y.ndim != 1:
        expected = "(N,)" if num_images is None else f"(N,) = ({num_images},)"
        raise UsageError(
            f"Labels must have shape {expected}."
            f"{label_shape_hint(y.shape, numpy=True)} Received: "
            f"{name}.shape={y.shape}")
    if num_images is not None and len(y) != num_images:
        raise UsageError(
            f"Images and labels differ in number. Received: {num_images} "
            f"images and {len(y)} labels")
    if y.dtype.kind == "f":
        not_integer = ~np.isfinite(y) | (y != np.round(y))
        if np.any(not_integer):
            bad = y[np.argmax(not_integer)]
            raise UsageError(
                "Labels must be integer class indices. Received a "
                f"non-integer label: {bad} (dtype {y.dtype}) in {name}")
    elif y.dtype.kind not in "biu":
        raise UsageError(f"Labels must be integer class indices. Received: "
                         f"{name} of dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise UsageError(f"Labels must be >= 0. Received a label of "
                         f"{y.min()} in {name}")
    if num_classes is not None and y.size and y.max() >= num_classes:
        raise UsageError(
            f"Labels must be in [0, {num_classes}) for num_classes="
            f"{num_classes}. Received a label of {y.max()} in {name}")
    return y.astype(np.int32)


def label_shape_hint(shape, numpy):
    """The fix for labels of the wrong shape (``" "``-prefixed, or ``""``)."""
    shape = tuple(shape)
    if len(shape) == 2 and shape[1] is not None and shape[1] > 1:
        return (" One-hot labels? Use y.argmax(axis=-1)." if numpy else
                " One-hot labels? Map them to tf.argmax(y, axis=-1).")
    if len(shape) == 2:
        return (" Use y.reshape(-1)." if numpy else
                " Map them to tf.reshape(y, [-1]).")
    if len(shape) == 0:
        return " A single label? Pass a list of one label per image."
    return ""


def check_num_classes(num_classes, received="num_classes"):
    """Refuses a class count below 2 (a 1-class "classifier" learns nothing).

    Raises:
        UsageError: Naming ``received`` (e.g. a flag or a dataset spec).
    """
    if isinstance(num_classes, bool) or not isinstance(
            num_classes, (int, np.integer)) or num_classes < 2:
        raise UsageError(f"A classifier needs at least 2 classes. Received: "
                         f"{received}={num_classes!r}")
    return int(num_classes)


def validate_arrays(x, y, num_classes=None, input_shape=None):
    """Checks user-provided images and labels before training or attacking.

    `check_images` then `check_labels` (with ``num_images=len(x)``).

    Args:
        x: Images, shape ``(N, H, W, C)``, float in ``[0, 1]``.
        y: Integer class labels, shape ``(N,)``.
        num_classes: If given, labels must be in ``[0, num_classes)``.
        input_shape: If given, the ``(H, W, C)`` every image must have.

    Returns:
        ``(x, y)`` as float32 and int32 numpy arrays.

    Raises:
        UsageError: On the first problem found, naming the received value and
            what was expected.
    """
    x = check_images(x, "x", input_shape)
    y = check_labels(y, num_classes, "y", num_images=len(x))
    return x, y


def check_dataset(dataset, num_classes=None, input_shape=None, batched=True,
                  name="dataset"):
    """Checks what can be known of a ``tf.data`` pipeline without reading it.

    The values (pixel range, NaN, label range) are only known when the data is
    read; this checks the structure, so a wrong label shape or an empty
    dataset is refused before training starts rather than as a long
    ``InvalidArgumentError`` (or a silent ``{}`` from ``fit``).

    Args:
        dataset: A ``tf.data.Dataset`` of ``(images, labels)`` or
            ``(images, labels, sample_weight)``.
        num_classes: If given, checked to be at least 2.
        input_shape: If given, the ``(H, W, C)`` of one image (unknown
            dimensions in the pipeline are not compared).
        batched: Elements are batches (what ``fit`` takes) rather than single
            examples (what `make_pipeline` takes).
        name: What to call the dataset in messages.

    Returns:
        ``dataset``, unchanged.

    Raises:
        UsageError: For a non-dataset, another element structure, images not
            of rank 4 (batched) or 3 (unbatched), labels not of shape
            ``(batch,)`` (or ``()`` per example), non-numeric dtypes, or a
            dataset known to be empty. Unknown cardinality is not refused.
    """
    what = "a batched" if batched else "an unbatched"
    if not isinstance(dataset, tf.data.Dataset):
        raise UsageError(
            f"`{name}` must be {what} tf.data.Dataset of (image, label). "
            f"Received: {name} of type {type(dataset).__name__}")
    if num_classes is not None:
        check_num_classes(num_classes)
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) in (2, 3) and all(
            isinstance(s, tf.TensorSpec) for s in spec[:2])):
        raise UsageError(
            f"The elements of {name} must be (images, labels) or (images, "
            f"labels, sample_weight) tensors. Received element_spec: {spec}")
    _check_spec_shapes(spec[0], spec[1], input_shape, batched, name)
    if int(dataset.cardinality()) == 0:
        raise UsageError(f"{name} is empty: it yields no "
                         f"{'batches' if batched else 'examples'}.")
    return dataset


def _check_spec_shapes(image_spec, label_spec, input_shape, batched, name):
    image_shape, label_shape = image_spec.shape, label_spec.shape
    rank = 4 if batched else 3
    if image_shape.rank is not None and image_shape.rank != rank:
        hint = ""
        if not batched and image_shape.rank == 4:
            hint = " Is it batched already? Pass the unbatched examples."
        raise UsageError(
            f"Images in {name} must have shape "
            f"{'(batch, H, W, C)' if batched else '(H, W, C)'}.{hint} "
            f"Received: image shape {image_shape}")
    if input_shape is not None and image_shape.rank is not None:
        for got, want in zip(image_shape[rank - 3:], input_shape):
            if got is not None and got != want:
                raise UsageError(
                    f"Images in {name} must have shape (H, W, C)="
                    f"{tuple(input_shape)}. Received: image shape "
                    f"{image_shape}")
    if not (image_spec.dtype.is_floating or image_spec.dtype.is_integer
            or image_spec.dtype.is_bool):
        raise UsageError(f"Images must be numeric. Received: images in {name} "
                         f"of dtype {image_spec.dtype.name}")
    expected_rank = 1 if batched else 0
    if label_shape.rank is not None and label_shape.rank != expected_rank:
        # Per example, () batches to (batch,): compare as the batch would be.
        batch_shape = tuple(label_shape) if batched else \
            (None,) + tuple(label_shape)
        raise UsageError(
            f"Labels in {name} must have shape "
            f"{'(batch,)' if batched else '() per example'}."
            f"{label_shape_hint(batch_shape, numpy=False)} Received: label "
            f"shape {label_shape}")
    if not (label_spec.dtype.is_integer or label_spec.dtype.is_floating):
        raise UsageError(f"Labels must be integer class indices. Received: "
                         f"labels in {name} of dtype {label_spec.dtype.name}")

"""Dataset sources (digits, TFDS, image folders, IDX files) as ``tf.data``.

Every source yields the same thing: unbatched ``(image, label)`` pairs with the
image float32 in ``[0, 1]``, shape ``(H, W, C)`` (NHWC once batched), and the
label int32 in ``[0, K)``. Attack budgets (``eps``) are given on that pixel
scale, so a source that forgot to rescale would silently turn ``eps=8/255`` into
a 255x weaker attack: ``validate_arrays`` exists to catch that on user arrays.

Nothing here downloads: TFDS data must already be prepared in ``data_dir``.
"""

import dataclasses
import gzip
import os
import re

import keras
import numpy as np
import tensorflow as tf
from keras import ops

_SOURCES_HELP = "digits, tfds:<name>[:split], folder:<path>, idx:<path>"
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_TEST_SPLIT_NAMES = ("test", "val", "validation")
_MAX_SHUFFLE_BUFFER = 10_000
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A loaded dataset: unbatched train/test ``tf.data`` pipelines plus facts.

    Attributes:
        name: Short name of the dataset (``"digits"``, the TFDS name, or the
            folder's base name).
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


def load_dataset(spec="digits", data_dir=None, image_size=None, seed=0,
                 test_fraction=0.2):
    """Loads a dataset as unbatched train/test ``tf.data`` pipelines.

    Args:
        spec: Which data to load:
            ``"digits"``: scikit-learn's 1,797 8x8 handwritten digits (bundled,
            no download), scaled by 1/16, with a stratified split.
            ``"tfds:<name>[:split]"``: a TFDS dataset already prepared in
            ``data_dir``. Training uses split ``train``; the test set is
            ``split`` if given (e.g. ``tfds:cifar10:test[:500]``), else
            ``test``, else ``validation``, else the last ``test_fraction`` of
            ``train``. ``<name>`` may carry a config and version
            (``mnist/3.0.1``, ``mnist:3.*.*``).
            ``"folder:<path>"``: images in ``path/{train,test}/<class>/`` (or
            ``val``/``validation`` for test), or in ``path/<class>/`` with a
            stratified split. PNG, JPEG, BMP and GIF are read.
            ``"idx:<path>"``: a folder with MNIST-format IDX files
            (``train-images-idx3-ubyte[.gz]``, ``t10k-...`` or ``test-...``).
        data_dir: TFDS data folder (``tfds:`` only). ``None`` means TFDS's
            default (``~/tensorflow_datasets``).
        image_size: Optional ``(H, W)`` (or one int for square images) to
            resize every image to (bilinear, antialiased). Required for folders
            whose images differ in size and TFDS sets without a fixed size.
        seed: Seed of the stratified splits (``digits``, ``folder:``).
        test_fraction: Fraction held out as test set when the source has no
            test split of its own; must be in ``(0, 1)``.

    Returns:
        A `DatasetInfo`.

    Raises:
        ValueError: If the spec is unknown, the data cannot be found or read,
            or an argument is out of range. The message names the received
            value.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"Unknown dataset source {spec!r}. Expected one of: "
            f"{_SOURCES_HELP}. Received: dataset={spec!r}"
        )
    spec = spec.strip()
    image_size = _check_image_size(image_size)
    test_fraction = _check_test_fraction(test_fraction)
    if spec == "digits":
        return _load_digits(image_size, seed, test_fraction)
    kind, _, rest = spec.partition(":")
    if kind in ("tfds", "folder", "idx") and not rest.strip():
        raise ValueError(
            f"Dataset source '{kind}:' needs a "
            f"{'name' if kind == 'tfds' else 'path'} after the colon, e.g. "
            f"'{kind}:{'mnist' if kind == 'tfds' else '/data/' + kind}'. "
            f"Received: dataset={spec!r}"
        )
    if kind == "tfds":
        return _load_tfds(spec, rest.strip(), data_dir, image_size,
                          test_fraction)
    if kind == "folder":
        return _load_folder(spec, rest, image_size, seed, test_fraction)
    if kind == "idx":
        return _load_idx(spec, rest, image_size)
    raise ValueError(
        f"Unknown dataset source '{spec}'. Expected one of: {_SOURCES_HELP}. "
        f"Received: dataset={spec!r}"
    )


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
        ValueError: If an argument is invalid.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "`dataset` must be an unbatched tf.data.Dataset of (image, label). "
            f"Received: dataset of type {type(dataset).__name__}"
        )
    if (isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(
            f"`batch_size` must be an integer >= 1. Received: "
            f"batch_size={batch_size!r}"
        )
    if augment not in (None, "crop_flip", "crop"):
        raise ValueError(
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
        image_spec = dataset.element_spec[0]
        height, width = image_spec.shape[1], image_spec.shape[2]
        if height is None or width is None:
            raise ValueError(
                "Augmentation needs images of a fixed size; pass image_size to "
                f"load_dataset. Received: image shape {image_spec.shape}"
            )
        if pad is None:
            pad = max(1, min(4, min(height, width) // 8))
        layers = [RandomPadCrop(pad, seed=seed)]
        if augment == "crop_flip":
            layers.append(keras.layers.RandomFlip(
                "horizontal", seed=None if seed is None else seed + 1))

        def apply(images, labels):
            for layer in layers:
                images = layer(images, training=True)
            return images, labels

        # Sequential map: the layers draw from stateful seed generators, so a
        # parallel map would make the crops depend on thread timing.
        dataset = dataset.map(apply)
    return dataset.prefetch(tf.data.AUTOTUNE)


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
            raise ValueError(
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
            raise ValueError(
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


def validate_arrays(x, y, num_classes=None, input_shape=None):
    """Checks user-provided images and labels before training or attacking.

    Args:
        x: Images, shape ``(N, H, W, C)``, float in ``[0, 1]``.
        y: Integer class labels, shape ``(N,)``.
        num_classes: If given, labels must be in ``[0, num_classes)``.
        input_shape: If given, the ``(H, W, C)`` every image must have.

    Returns:
        ``(x, y)`` as float32 and int32 numpy arrays.

    Raises:
        ValueError: On the first problem found (wrong rank or shape, NaN/inf
            pixels, pixels outside ``[0, 1]``, non-integer or out-of-range
            labels), naming the received value and what was expected.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype.kind not in "biuf":
        raise ValueError(
            f"Images must be numeric. Received: x of dtype {x.dtype}"
        )
    expected = "(N, H, W, C)" if input_shape is None else \
        f"(N, {', '.join(str(d) for d in input_shape)})"
    if x.ndim != 4:
        hint = ""
        if x.ndim == 3:
            hint = " For grayscale images add a channel axis: x[..., None]."
        raise ValueError(
            f"Images must have rank 4 with shape {expected}.{hint} "
            f"Received: x.shape={x.shape}"
        )
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"Images must have shape {expected}. Received: x.shape={x.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"No images. Received: x.shape={x.shape}")
    x = x.astype(np.float32, copy=False)
    num_bad = int(np.count_nonzero(~np.isfinite(x)))
    if num_bad:
        raise ValueError(
            f"Images contain {num_bad} NaN or infinite pixel values out of "
            f"{x.size}. Expected finite values in [0, 1]."
        )
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        hint = ""
        if high > 1.0:
            hint = (" Images must be scaled to [0, 1]; if they are 0-255 "
                    "pixel values, divide by 255.")
        raise ValueError(
            f"Pixel values must be in [0, 1]. Received: min={low:g}, "
            f"max={high:g}.{hint}"
        )
    if y.ndim != 1:
        hint = ""
        if y.ndim == 2 and y.shape[1] > 1:
            hint = " One-hot labels? Use y.argmax(axis=-1)."
        elif y.ndim == 2:
            hint = " Use y.reshape(-1)."
        raise ValueError(
            f"Labels must have shape (N,) = ({x.shape[0]},).{hint} Received: "
            f"y.shape={y.shape}"
        )
    if len(y) != len(x):
        raise ValueError(
            f"Images and labels differ in number. Received: {len(x)} images "
            f"and {len(y)} labels"
        )
    if y.dtype.kind == "f":
        not_integer = ~np.isfinite(y) | (y != np.round(y))
        if np.any(not_integer):
            bad = y[np.argmax(not_integer)]
            raise ValueError(
                "Labels must be integer class indices. Received a "
                f"non-integer label: {bad} (dtype {y.dtype})"
            )
    elif y.dtype.kind not in "biu":
        raise ValueError(
            f"Labels must be integer class indices. Received: y of dtype "
            f"{y.dtype}"
        )
    if y.size and y.min() < 0:
        raise ValueError(
            f"Labels must be >= 0. Received a label of {y.min()}"
        )
    if num_classes is not None and y.size and y.max() >= num_classes:
        raise ValueError(
            f"Labels must be in [0, {num_classes}) for num_classes="
            f"{num_classes}. Received a label of {y.max()}"
        )
    return x, y.astype(np.int32)


# ----------------------------------------------------------------- helpers


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) \
            and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        size = tuple(int(d) for d in image_size)
        valid = len(size) == 2 and all(d >= 1 for d in size) and all(
            not isinstance(d, bool) and float(d) == int(d) for d in image_size)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "`image_size` must be None, an int or a pair (height, width) of "
            f"positive ints. Received: image_size={image_size!r}"
        )
    return size


def _check_test_fraction(test_fraction):
    try:
        value = float(test_fraction)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise ValueError(
            "`test_fraction` must be a number in (0, 1). Received: "
            f"test_fraction={test_fraction!r}"
        )
    return value


def _images_to_float(images, scale, image_size):
    """Pixel arrays of scale ``scale`` -> float32 in [0, 1], resized."""
    images = tf.cast(images, tf.float32) / scale
    if image_size is not None and tuple(images.shape[-3:-1]) != image_size:
        images = tf.image.resize(images, image_size, method="bilinear",
                                 antialias=True)
        images = tf.clip_by_value(images, 0.0, 1.0)
    return images


def _dataset_from_arrays(images, labels, scale, image_size):
    """An unbatched float32 [0, 1] dataset from raw pixel arrays in memory."""
    dataset = tf.data.Dataset.from_tensor_slices(
        (images, np.asarray(labels, np.int32)))
    return dataset.map(
        lambda image, label: (_images_to_float(image, scale, image_size),
                              label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _stratified_split(labels, test_fraction, seed, what):
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    try:
        train_idx, test_idx = train_test_split(
            indices, test_size=test_fraction, stratify=labels,
            random_state=seed)
    except ValueError as error:
        counts = np.bincount(labels)
        raise ValueError(
            f"Cannot split {what} into train/test stratified by class with "
            f"test_fraction={test_fraction}: every class needs at least 2 "
            f"images and the test set at least one image per class. Images "
            f"per class: {counts.tolist()}. ({error})"
        ) from None
    return train_idx, test_idx


def _load_digits(image_size, seed, test_fraction):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32)[..., None]  # values 0..16
    labels = digits.target.astype(np.int32)
    train_idx, test_idx = _stratified_split(labels, test_fraction, seed,
                                            "the digits")
    height, width = image_size or images.shape[1:3]
    return DatasetInfo(
        name="digits",
        train=_dataset_from_arrays(images[train_idx], labels[train_idx], 16.0,
                                   image_size),
        test=_dataset_from_arrays(images[test_idx], labels[test_idx], 16.0,
                                  image_size),
        num_classes=10,
        input_shape=(int(height), int(width), 1),
        class_names=[str(i) for i in range(10)],
        num_train=len(train_idx),
        num_test=len(test_idx),
    )


# ----------------------------------------------------------------- TFDS

# `name[:version]` then an optional `:split`; a version starts with a digit,
# a split name never does.
_TFDS_SPEC = re.compile(r"^(?P<name>[^:]+(?::\d[\d.*]*)?)(?::(?P<split>.+))?$")


def _load_tfds(spec, rest, data_dir, image_size, test_fraction):
    match = _TFDS_SPEC.match(rest)
    if match is None:
        raise ValueError(
            f"Expected 'tfds:<name>[:split]'. Received: dataset={spec!r}"
        )
    name, test_split = match.group("name"), match.group("split")
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ValueError(
            f"Loading {spec!r} needs tensorflow-datasets (and, for 4.9.x, "
            f"importlib_resources): {error}"
        ) from None
    where = data_dir if data_dir is not None else "the default TFDS data_dir"
    how_to = (
        f"There is no network here: the data must be prepared in `data_dir` "
        f"(--data_dir) first, e.g. with `tfds build {name.split(':')[0]} "
        f"--data_dir DIR` on a machine with network access, then copy DIR. "
        f"Received: dataset={spec!r}, data_dir={data_dir!r}"
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    except Exception as error:  # DatasetNotFoundError, bad versions, I/O.
        first_line = str(error).strip().splitlines()[0] if str(error) else ""
        raise ValueError(
            f"TFDS dataset '{name}' was not found in {where} "
            f"({type(error).__name__}: {first_line}). {how_to}"
        ) from None
    if not prepared:
        raise ValueError(
            f"TFDS dataset '{name}' is not prepared in {where}. {how_to}"
        )

    info = builder.info
    features = info.features
    if info.supervised_keys:
        image_key, label_key = info.supervised_keys[:2]
    else:
        image_key, label_key = "image", "label"
    if image_key not in features or label_key not in features:
        raise ValueError(
            f"TFDS dataset '{name}' has no (image, label) features. Received "
            f"features: {sorted(features.keys())}"
        )
    label_feature = features[label_key]
    num_classes = getattr(label_feature, "num_classes", None)
    if not num_classes:
        raise ValueError(
            f"The label feature '{label_key}' of TFDS dataset '{name}' is not "
            f"a ClassLabel, so the number of classes is unknown. Received: "
            f"{label_feature!r}"
        )
    image_shape = tuple(features[image_key].shape)
    if len(image_shape) != 3:
        raise ValueError(
            f"TFDS dataset '{name}' does not hold images of shape (H, W, C). "
            f"Received: image feature shape {image_shape}"
        )
    if image_size is None and (image_shape[0] is None
                               or image_shape[1] is None):
        raise ValueError(
            f"TFDS dataset '{name}' has images of varying size; pass "
            f"image_size=(H, W). Received: image feature shape {image_shape}"
        )
    if image_shape[2] is None:
        raise ValueError(
            f"TFDS dataset '{name}' has an unknown number of channels. "
            f"Received: image feature shape {image_shape}"
        )
    pixel_dtype = np.dtype(features[image_key].np_dtype)
    scale = float(np.iinfo(pixel_dtype).max) if pixel_dtype.kind in "ui" \
        else 1.0

    splits = list(info.splits.keys())
    if "train" not in splits:
        raise ValueError(
            f"TFDS dataset '{name}' has no 'train' split. Received splits: "
            f"{splits}"
        )
    train_split = "train"
    if test_split is None:
        test_split = next((s for s in ("test", "validation") if s in splits),
                          None)
    elif re.match(r"^train\b", test_split):
        raise ValueError(
            f"The test split '{test_split}' would overlap the training split "
            f"'train'. Leave the split out to hold out test_fraction of "
            f"'train'. Received: dataset={spec!r}"
        )
    if test_split is None:
        num_examples = info.splits["train"].num_examples
        num_test = max(1, int(round(num_examples * test_fraction)))
        train_split = f"train[:{num_examples - num_test}]"
        test_split = f"train[{num_examples - num_test}:]"
    try:
        num_train = info.splits[train_split].num_examples
        num_test = info.splits[test_split].num_examples
    except Exception as error:
        raise ValueError(
            f"Invalid split for TFDS dataset '{name}': {error} Received: "
            f"dataset={spec!r}"
        ) from None

    def load(split):
        dataset = builder.as_dataset(split=split, shuffle_files=False)
        return dataset.map(
            lambda example: (
                _images_to_float(example[image_key], scale, image_size),
                tf.cast(example[label_key], tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    height, width = image_size or image_shape[:2]
    names = getattr(label_feature, "names", None) or [
        str(i) for i in range(num_classes)]
    return DatasetInfo(
        name=name.split(":")[0],
        train=load(train_split),
        test=load(test_split),
        num_classes=int(num_classes),
        input_shape=(int(height), int(width), int(image_shape[2])),
        class_names=list(names),
        num_train=int(num_train),
        num_test=int(num_test),
    )


# ----------------------------------------------------------------- folders


def _list_class_folders(folder, spec):
    classes = sorted(
        entry for entry in os.listdir(folder)
        if not entry.startswith(".")
        and os.path.isdir(os.path.join(folder, entry)))
    if not classes:
        raise ValueError(
            f"No class subfolders in '{folder}'. Expected one subfolder of "
            f"images per class (e.g. '{folder}/cat/1.png'). Received: "
            f"dataset={spec!r}"
        )
    files = {}
    for name in classes:
        class_dir = os.path.join(folder, name)
        found = sorted(
            os.path.join(class_dir, entry) for entry in os.listdir(class_dir)
            if not entry.startswith(".")
            and entry.lower().endswith(_IMAGE_EXTENSIONS)
            and os.path.isfile(os.path.join(class_dir, entry)))
        if not found:
            raise ValueError(
                f"Class folder '{name}' ({class_dir}) has no images. Expected "
                f"files ending in {', '.join(_IMAGE_EXTENSIONS)}. Received: "
                f"dataset={spec!r}"
            )
        files[name] = found
    return files


def _decode_image(path):
    try:
        image = tf.io.decode_image(tf.io.read_file(path), channels=0,
                                   expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise ValueError(
            f"Cannot decode image '{path}': {error.message.splitlines()[0]}"
        ) from None
    return image.numpy()


def _is_grayscale(image):
    if image.shape[-1] in (1, 2):  # gray, gray + alpha
        return True
    return bool(np.array_equal(image[..., 0], image[..., 1])
                and np.array_equal(image[..., 0], image[..., 2]))


def _to_channels(image, channels):
    if channels == 1:
        return image[..., :1]
    if image.shape[-1] in (1, 2):
        return np.repeat(image[..., :1], 3, axis=-1)
    return image[..., :3]  # drops alpha


def _read_images(paths, image_size, spec):
    """Decodes files to one uint8 array (N, H, W, C) of a common size."""
    images = [_decode_image(path) for path in paths]
    sizes = {}
    for path, image in zip(paths, images):
        sizes.setdefault(image.shape[:2], path)
    if image_size is None and len(sizes) > 1:
        examples = ", ".join(
            f"{h}x{w} ({os.path.basename(p)})"
            for (h, w), p in list(sizes.items())[:3])
        raise ValueError(
            f"Images differ in size ({examples}); pass image_size=(H, W) to "
            f"resize them. Received: dataset={spec!r}, image_size=None"
        )
    channels = 1 if all(_is_grayscale(image) for image in images) else 3
    target = image_size or next(iter(sizes))
    out = np.empty((len(images),) + tuple(target) + (channels,), np.uint8)
    for i, image in enumerate(images):
        image = _to_channels(image, channels)
        if image.shape[:2] != tuple(target):
            resized = tf.image.resize(tf.cast(image, tf.float32), target,
                                      method="bilinear", antialias=True)
            image = np.clip(np.round(resized.numpy()), 0, 255)
        out[i] = image
    return out


def _load_folder(spec, path, image_size, seed, test_fraction):
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise ValueError(
            f"Dataset folder '{path}' does not exist. Received: "
            f"dataset={spec!r}"
        )
    if not os.path.isdir(path):
        raise ValueError(
            f"Dataset path '{path}' is not a directory. Expected a folder of "
            f"class subfolders. Received: dataset={spec!r}"
        )
    entries = [e for e in os.listdir(path)
               if os.path.isdir(os.path.join(path, e))]
    if "train" in entries:
        test_name = next((n for n in _TEST_SPLIT_NAMES if n in entries), None)
        if test_name is None:
            raise ValueError(
                f"'{path}' has a 'train' subfolder but no 'test', 'val' or "
                f"'validation' subfolder. Received: dataset={spec!r}"
            )
        train_files = _list_class_folders(os.path.join(path, "train"), spec)
        test_files = _list_class_folders(os.path.join(path, test_name), spec)
        missing = sorted(set(train_files) - set(test_files))
        extra = sorted(set(test_files) - set(train_files))
        if missing or extra:
            problem = (f"classes {missing} are in 'train' but not in "
                       f"'{test_name}'" if missing else
                       f"classes {extra} are in '{test_name}' but not in "
                       f"'train'")
            raise ValueError(
                f"The train and {test_name} folders of '{path}' must have the "
                f"same class subfolders: {problem}. Received: "
                f"dataset={spec!r}"
            )
        class_names = sorted(train_files)

        def gather(files):
            paths = [p for name in class_names for p in files[name]]
            labels = [i for i, name in enumerate(class_names)
                      for _ in files[name]]
            return paths, np.asarray(labels, np.int32)

        train_paths, y_train = gather(train_files)
        test_paths, y_test = gather(test_files)
        x_all = _read_images(train_paths + test_paths, image_size, spec)
        x_train, x_test = x_all[:len(train_paths)], x_all[len(train_paths):]
    else:
        files = _list_class_folders(path, spec)
        class_names = sorted(files)
        paths = [p for name in class_names for p in files[name]]
        labels = np.asarray([i for i, name in enumerate(class_names)
                             for _ in files[name]], np.int32)
        x_all = _read_images(paths, image_size, spec)
        train_idx, test_idx = _stratified_split(labels, test_fraction, seed,
                                                f"folder '{path}'")
        x_train, y_train = x_all[train_idx], labels[train_idx]
        x_test, y_test = x_all[test_idx], labels[test_idx]

    return DatasetInfo(
        name=os.path.basename(os.path.normpath(path)),
        train=_dataset_from_arrays(x_train, y_train, 255.0, None),
        test=_dataset_from_arrays(x_test, y_test, 255.0, None),
        num_classes=len(class_names),
        input_shape=tuple(int(d) for d in x_all.shape[1:]),
        class_names=list(class_names),
        num_train=len(y_train),
        num_test=len(y_test),
    )


# ----------------------------------------------------------------- IDX


def _find_idx_file(folder, prefixes, kind, spec):
    rank = 3 if kind == "images" else 1
    candidates = [f"{prefix}-{kind}{sep}idx{rank}-ubyte{ext}"
                  for prefix in prefixes for sep in ("-", ".")
                  for ext in ("", ".gz")]
    for name in candidates:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise ValueError(
        f"No IDX {kind} file for '{prefixes[0]}' in '{folder}'. Looked for: "
        f"{', '.join(candidates)}. Received: dataset={spec!r}"
    )


def _read_idx(path, expected_magic):
    """Parses one IDX file of unsigned bytes into a numpy array."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    what = "images" if expected_magic == _IDX_IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise ValueError(
            f"IDX file '{path}' is too short ({len(data)} bytes) to hold a "
            f"header."
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"IDX file '{path}' has the wrong magic number for {what}. "
            f"Received: 0x{magic:08X}, expected: 0x{expected_magic:08X}"
        )
    rank = magic & 0xFF
    header_size = 4 + 4 * rank
    if len(data) < header_size:
        raise ValueError(
            f"IDX file '{path}' is truncated inside its header "
            f"({len(data)} bytes)."
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", rank, 4))
    body = np.frombuffer(data, np.uint8, offset=header_size)
    if body.size != int(np.prod(dims)):
        raise ValueError(
            f"IDX file '{path}' holds {body.size} bytes of data but its header "
            f"says shape {dims} ({int(np.prod(dims))} bytes)."
        )
    return body.reshape(dims)


def _load_idx(spec, path, image_size):
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise ValueError(
            f"IDX folder '{path}' does not exist or is not a directory. "
            f"Received: dataset={spec!r}"
        )
    arrays = {}
    for split, prefixes in (("train", ("train",)), ("test", ("t10k", "test"))):
        image_path = _find_idx_file(path, prefixes, "images", spec)
        label_path = _find_idx_file(path, prefixes, "labels", spec)
        images = _read_idx(image_path, _IDX_IMAGES_MAGIC)
        labels = _read_idx(label_path, _IDX_LABELS_MAGIC)
        if len(images) != len(labels):
            raise ValueError(
                f"The {split} IDX files differ in count: {len(images)} images "
                f"in '{os.path.basename(image_path)}' but {len(labels)} "
                f"labels in '{os.path.basename(label_path)}'."
            )
        arrays[split] = (images[..., None], labels.astype(np.int32))
    (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"Train and test IDX images differ in size: {x_train.shape[1:3]} "
            f"vs {x_test.shape[1:3]}. Received: dataset={spec!r}"
        )
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    height, width = image_size or x_train.shape[1:3]
    return DatasetInfo(
        name=os.path.basename(os.path.normpath(path)),
        train=_dataset_from_arrays(x_train, y_train, 255.0, image_size),
        test=_dataset_from_arrays(x_test, y_test, 255.0, image_size),
        num_classes=num_classes,
        input_shape=(int(height), int(width), 1),
        class_names=[str(i) for i in range(num_classes)],
        num_train=len(y_train),
        num_test=len(y_test),
    )

"""``tfds:<name>[:split]``: a TFDS dataset already prepared in ``data_dir``.

Nothing is downloaded: a dataset that is not prepared is refused with how to
prepare it elsewhere.
"""

import re

import numpy as np
from atalp_keras.lazy import tensorflow as tf

from atalp_keras.data.info import DatasetInfo, images_to_float
from atalp_keras.data.registry import register_source
from atalp_keras.errors import UsageError

# `name[:version]` then an optional `:split`; a version starts with a digit,
# a split name never does.
_TFDS_SPEC = re.compile(r"^(?P<name>[^:]+(?::\d[\d.*]*)?)(?::(?P<split>.+))?$")


@register_source("tfds", usage="tfds:<name>[:split]", argument="name",
                 example="mnist")
def load_tfds(request):
    """Train split ``train``; test split as given, else ``test``, else
    ``validation``, else the last ``test_fraction`` of ``train``."""
    spec = request.spec
    match = _TFDS_SPEC.match(request.argument.strip())
    if match is None:
        raise UsageError(
            f"Expected 'tfds:<name>[:split]'. Received: dataset={spec!r}")
    name, test_split = match.group("name"), match.group("split")
    builder = _prepared_builder(name, spec, request.data_dir)
    features = _image_label_features(builder.info, name, request.image_size)
    train_split, test_split, num_train, num_test = _choose_splits(
        builder.info, name, spec, test_split, request.test_fraction)
    image_key, label_key, image_shape, scale, class_names = features

    def load(split):
        dataset = builder.as_dataset(split=split, shuffle_files=False)
        return dataset.map(
            lambda example: (
                images_to_float(example[image_key], scale, request.image_size),
                tf.cast(example[label_key], tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    height, width = request.image_size or image_shape[:2]
    return DatasetInfo(
        name=name.split(":")[0],
        train=load(train_split),
        test=load(test_split),
        num_classes=len(class_names),
        input_shape=(int(height), int(width), int(image_shape[2])),
        class_names=class_names,
        num_train=int(num_train),
        num_test=int(num_test),
    )


def _prepared_builder(name, spec, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise UsageError(
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
        raise UsageError(
            f"TFDS dataset '{name}' was not found in {where} "
            f"({type(error).__name__}: {first_line}). {how_to}"
        ) from None
    if not prepared:
        raise UsageError(
            f"TFDS dataset '{name}' is not prepared in {where}. {how_to}")
    return builder


def _image_label_features(info, name, image_size):
    """``(image_key, label_key, image_shape, scale, class_names)``."""
    features = info.features
    if info.supervised_keys:
        image_key, label_key = info.supervised_keys[:2]
    else:
        image_key, label_key = "image", "label"
    if image_key not in features or label_key not in features:
        raise UsageError(
            f"TFDS dataset '{name}' has no (image, label) features. Received "
            f"features: {sorted(features.keys())}")
    label_feature = features[label_key]
    num_classes = getattr(label_feature, "num_classes", None)
    if not num_classes:
        raise UsageError(
            f"The label feature '{label_key}' of TFDS dataset '{name}' is not "
            f"a ClassLabel, so the number of classes is unknown. Received: "
            f"{label_feature!r}")
    image_shape = tuple(features[image_key].shape)
    if len(image_shape) != 3:
        raise UsageError(
            f"TFDS dataset '{name}' does not hold images of shape (H, W, C). "
            f"Received: image feature shape {image_shape}")
    if image_size is None and (image_shape[0] is None
                               or image_shape[1] is None):
        raise UsageError(
            f"TFDS dataset '{name}' has images of varying size; pass "
            f"image_size=(H, W). Received: image feature shape {image_shape}")
    if image_shape[2] is None:
        raise UsageError(
            f"TFDS dataset '{name}' has an unknown number of channels. "
            f"Received: image feature shape {image_shape}")
    pixel_dtype = np.dtype(features[image_key].np_dtype)
    scale = float(np.iinfo(pixel_dtype).max) if pixel_dtype.kind in "ui" \
        else 1.0
    class_names = list(getattr(label_feature, "names", None) or [
        str(i) for i in range(num_classes)])
    return image_key, label_key, image_shape, scale, class_names


def _choose_splits(info, name, spec, test_split, test_fraction):
    """``(train_split, test_split, num_train, num_test)``."""
    splits = list(info.splits.keys())
    if "train" not in splits:
        raise UsageError(f"TFDS dataset '{name}' has no 'train' split. "
                         f"Received splits: {splits}")
    train_split = "train"
    if test_split is None:
        test_split = next((s for s in ("test", "validation") if s in splits),
                          None)
    elif re.match(r"^train\b", test_split):
        raise UsageError(
            f"The test split '{test_split}' would overlap the training split "
            f"'train'. Leave the split out to hold out test_fraction of "
            f"'train'. Received: dataset={spec!r}")
    if test_split is None:
        num_examples = info.splits["train"].num_examples
        num_test = max(1, int(round(num_examples * test_fraction)))
        train_split = f"train[:{num_examples - num_test}]"
        test_split = f"train[{num_examples - num_test}:]"
    try:
        num_train = info.splits[train_split].num_examples
        num_test = info.splits[test_split].num_examples
    except Exception as error:
        raise UsageError(
            f"Invalid split for TFDS dataset '{name}': {error} Received: "
            f"dataset={spec!r}"
        ) from None
    return train_split, test_split, num_train, num_test

"""``folder:<path>``: image files in one subfolder per class.

Layouts: ``path/<class>/*`` (split stratified by class with the data seed) or
``path/train/<class>/*`` plus ``path/{test,val,validation}/<class>/*``. PNG,
JPEG, BMP and GIF are read; all-gray folders give one channel, else three.
"""

import os

import numpy as np
from atalp_keras.lazy import tensorflow as tf

from atalp_keras.data.info import info_from_arrays
from atalp_keras.data.registry import register_source
from atalp_keras.data.splits import stratified_split
from atalp_keras.errors import UsageError

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_TEST_SPLIT_NAMES = ("test", "val", "validation")


@register_source("folder", usage="folder:<path>", argument="path",
                 example="/data/folder")
def load_folder(request):
    """Reads every image into memory (resized to ``request.image_size``)."""
    spec, path = request.spec, os.path.expanduser(request.argument)
    if not os.path.exists(path):
        raise UsageError(f"Dataset folder '{path}' does not exist. Received: "
                         f"dataset={spec!r}")
    if not os.path.isdir(path):
        raise UsageError(
            f"Dataset path '{path}' is not a directory. Expected a folder of "
            f"class subfolders. Received: dataset={spec!r}")
    entries = [e for e in os.listdir(path)
               if os.path.isdir(os.path.join(path, e))]
    if "train" in entries:
        class_names, train, test = _split_layout(path, entries, request)
    else:
        class_names, train, test = _flat_layout(path, request)
    return info_from_arrays(os.path.basename(os.path.normpath(path)), train,
                            test, scale=255.0, class_names=class_names)


def _split_layout(path, entries, request):
    """``path/train/<class>`` + ``path/<test>/<class>``, read as is."""
    spec = request.spec
    test_name = next((n for n in _TEST_SPLIT_NAMES if n in entries), None)
    if test_name is None:
        raise UsageError(
            f"'{path}' has a 'train' subfolder but no 'test', 'val' or "
            f"'validation' subfolder. Received: dataset={spec!r}")
    train_files = _list_class_folders(os.path.join(path, "train"), spec)
    test_files = _list_class_folders(os.path.join(path, test_name), spec)
    missing = sorted(set(train_files) - set(test_files))
    extra = sorted(set(test_files) - set(train_files))
    if missing or extra:
        problem = (f"classes {missing} are in 'train' but not in "
                   f"'{test_name}'" if missing else
                   f"classes {extra} are in '{test_name}' but not in 'train'")
        raise UsageError(
            f"The train and {test_name} folders of '{path}' must have the "
            f"same class subfolders: {problem}. Received: dataset={spec!r}")
    class_names = sorted(train_files)
    _check_two_classes(class_names, os.path.join(path, "train"), spec)

    def gather(files):
        paths = [p for name in class_names for p in files[name]]
        labels = [i for i, name in enumerate(class_names)
                  for _ in files[name]]
        return paths, np.asarray(labels, np.int32)

    train_paths, y_train = gather(train_files)
    test_paths, y_test = gather(test_files)
    x_all = _read_images(train_paths + test_paths, request.image_size, spec)
    num_train = len(train_paths)
    return class_names, (x_all[:num_train], y_train), (x_all[num_train:],
                                                       y_test)


def _flat_layout(path, request):
    """``path/<class>``, split stratified by class with the data seed."""
    files = _list_class_folders(path, request.spec)
    class_names = sorted(files)
    _check_two_classes(class_names, path, request.spec)
    paths = [p for name in class_names for p in files[name]]
    labels = np.asarray([i for i, name in enumerate(class_names)
                         for _ in files[name]], np.int32)
    x_all = _read_images(paths, request.image_size, request.spec)
    train_idx, test_idx = stratified_split(labels, request.test_fraction,
                                           request.seed, f"folder '{path}'")
    return class_names, (x_all[train_idx], labels[train_idx]), (
        x_all[test_idx], labels[test_idx])


def _check_two_classes(class_names, folder, spec):
    if len(class_names) < 2:
        raise UsageError(
            f"Dataset folder '{folder}' has {len(class_names)} class "
            f"subfolder ({', '.join(class_names)}); a classifier needs at "
            f"least 2 classes, one subfolder of images each. Received: "
            f"dataset={spec!r}")


def _list_class_folders(folder, spec):
    classes = _visible_entries(folder, os.path.isdir)
    if not classes:
        raise UsageError(
            f"No class subfolders in '{folder}'. Expected one subfolder of "
            f"images per class (e.g. '{folder}/cat/1.png'). Received: "
            f"dataset={spec!r}")
    files = {}
    for name in classes:
        class_dir = os.path.join(folder, name)
        found = [os.path.join(class_dir, entry) for entry in _visible_entries(
            class_dir, lambda path: path.lower().endswith(_IMAGE_EXTENSIONS)
            and os.path.isfile(path))]
        if not found:
            raise UsageError(
                f"Class folder '{name}' ({class_dir}) has no images. Expected "
                f"files ending in {', '.join(_IMAGE_EXTENSIONS)}. Received: "
                f"dataset={spec!r}")
        files[name] = found
    return files


def _visible_entries(folder, keep):
    """Sorted names in ``folder``, hidden ones skipped, ``keep(path)`` true."""
    return sorted(entry for entry in os.listdir(folder)
                  if not entry.startswith(".")
                  and keep(os.path.join(folder, entry)))


def _decode_image(path):
    try:
        image = tf.io.decode_image(tf.io.read_file(path), channels=0,
                                   expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise UsageError(
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
        raise UsageError(
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



"""``idx:<path>``: a folder of MNIST-format IDX files (gzipped or plain).

IDX is the format of MNIST and Fashion-MNIST: a big-endian magic number
(``0x803`` for rank-3 byte images, ``0x801`` for rank-1 byte labels), the
dimensions, then the bytes.
"""

import gzip
import os

import numpy as np

from atalp_keras.data.info import info_from_arrays
from atalp_keras.data.registry import register_source
from atalp_keras.errors import UsageError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# File-name prefixes of each split, in the order they are looked for.
SPLIT_PREFIXES = (("train", ("train",)), ("test", ("t10k", "test")))


@register_source("idx", usage="idx:<path>", argument="path",
                 example="/data/idx")
def load_idx(request):
    """Train and test from the folder's IDX files; ``K`` = largest label + 1."""
    path = os.path.expanduser(request.argument)
    if not os.path.isdir(path):
        raise UsageError(f"IDX folder '{path}' does not exist or is not a "
                         f"directory. Received: dataset={request.spec!r}")
    files, missing = find_idx_files(path)
    if missing:
        prefixes, kind = missing
        raise UsageError(
            f"No IDX {kind} file for '{prefixes[0]}' in '{path}'. Looked "
            f"for: {', '.join(idx_file_names(prefixes, kind))}. Received: "
            f"dataset={request.spec!r}")
    train, test = read_idx_splits(files, request.spec)
    num_classes = int(max(train[1].max(initial=0), test[1].max(initial=0))) + 1
    return info_from_arrays(
        os.path.basename(os.path.normpath(path)), train, test, scale=255.0,
        class_names=[str(i) for i in range(num_classes)],
        image_size=request.image_size)


def idx_file_names(prefixes, kind):
    """The file names looked for, e.g. ``train-images-idx3-ubyte.gz``."""
    rank = 3 if kind == "images" else 1
    return [f"{prefix}-{kind}{sep}idx{rank}-ubyte{ext}"
            for prefix in prefixes for sep in ("-", ".")
            for ext in ("", ".gz")]


def find_idx_files(folder):
    """Finds the four IDX files of a folder.

    Returns:
        ``(files, missing)``: ``files`` maps ``(split, kind)`` to a path, for
        ``split`` in ``train``/``test`` and ``kind`` in ``images``/``labels``;
        ``missing`` is ``None``, or the ``(prefixes, kind)`` of the first file
        not found (then ``files`` is incomplete).
    """
    files = {}
    for split, prefixes in SPLIT_PREFIXES:
        for kind in ("images", "labels"):
            paths = [os.path.join(folder, name)
                     for name in idx_file_names(prefixes, kind)]
            found = next((p for p in paths if os.path.isfile(p)), None)
            if found is None:
                return files, (prefixes, kind)
            files[split, kind] = found
    return files, None


def read_idx(path, expected_magic):
    """Parses one IDX file of unsigned bytes into a numpy array."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    what = "images" if expected_magic == IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise UsageError(f"IDX file '{path}' is too short ({len(data)} bytes) "
                         f"to hold a header.")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise UsageError(
            f"IDX file '{path}' has the wrong magic number for {what}. "
            f"Received: 0x{magic:08X}, expected: 0x{expected_magic:08X}")
    rank = magic & 0xFF
    header_size = 4 + 4 * rank
    if len(data) < header_size:
        raise UsageError(f"IDX file '{path}' is truncated inside its header "
                         f"({len(data)} bytes).")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", rank, 4))
    body = np.frombuffer(data, np.uint8, offset=header_size)
    if body.size != int(np.prod(dims)):
        raise UsageError(
            f"IDX file '{path}' holds {body.size} bytes of data but its header "
            f"says shape {dims} ({int(np.prod(dims))} bytes).")
    return body.reshape(dims)


def read_idx_splits(files, spec):
    """``((x_train, y_train), (x_test, y_test))``, images ``(N, H, W, 1)``.

    Args:
        files: ``{(split, "images"|"labels"): path}`` for both splits.
        spec: The dataset spec, for messages.
    """
    arrays = {}
    for split, _ in SPLIT_PREFIXES:
        image_path, label_path = files[split, "images"], files[split, "labels"]
        images = read_idx(image_path, IMAGES_MAGIC)
        labels = read_idx(label_path, LABELS_MAGIC)
        if len(images) != len(labels):
            raise UsageError(
                f"The {split} IDX files differ in count: {len(images)} images "
                f"in '{os.path.basename(image_path)}' but {len(labels)} "
                f"labels in '{os.path.basename(label_path)}'.")
        arrays[split] = (images[..., None], labels.astype(np.int32))
    train, test = arrays["train"], arrays["test"]
    if train[0].shape[1:] != test[0].shape[1:]:
        raise UsageError(
            f"Train and test IDX images differ in size: {train[0].shape[1:3]} "
            f"vs {test[0].shape[1:3]}. Received: dataset={spec!r}")
    return train, test

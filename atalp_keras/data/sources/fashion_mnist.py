"""``fashion_mnist``: Zalando's Fashion-MNIST from its installed IDX files.

70,000 grayscale 28x28 images of 10 kinds of clothing, in the official split
of 60,000 training and 10,000 test images (Xiao, Rasul & Vollgraf, 2017).
Nothing is downloaded: the four gzipped IDX files are read from ``data_dir``
(``--data_dir``) or, without one, from where Debian's package
``dataset-fashion-mnist`` installs them.
"""

import os

from atalp_keras.data.info import info_from_arrays
from atalp_keras.data.registry import register_source
from atalp_keras.data.sources.idx import (find_idx_files, idx_file_names,
                                          read_idx_splits)
from atalp_keras.errors import UsageError

# Where `apt-get install dataset-fashion-mnist` puts the files
# (`dpkg -L dataset-fashion-mnist`).
INSTALLED_DIR = "/usr/share/datasets/fashion-mnist"
INSTALL_COMMAND = "sudo apt-get install -y dataset-fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_SHAPE = (28, 28, 1)


@register_source("fashion_mnist", usage="fashion_mnist")
def load_fashion_mnist(request):
    """The official 60k/10k split, pixels / 255, labels 0..9."""
    folder = INSTALLED_DIR if request.data_dir is None else \
        os.path.expanduser(str(request.data_dir))
    files, missing = find_idx_files(folder)
    if missing:
        raise UsageError(_missing_message(folder, *missing, request))
    train, test = read_idx_splits(files, request.spec)
    for split, (images, labels) in (("train", train), ("test", test)):
        if tuple(images.shape[1:]) != IMAGE_SHAPE or (
                labels.size and labels.max() >= len(CLASS_NAMES)):
            raise UsageError(
                f"The {split} IDX files in '{folder}' are not Fashion-MNIST: "
                f"expected 28x28 images and labels 0..9, found images of "
                f"{images.shape[1]}x{images.shape[2]} and labels up to "
                f"{labels.max(initial=0)}. Use --dataset=idx:{folder} for "
                f"other IDX data. Received: dataset={request.spec!r}")
    return info_from_arrays("fashion_mnist", train, test, scale=255.0,
                            class_names=CLASS_NAMES,
                            image_size=request.image_size)


def _missing_message(folder, prefixes, kind, request):
    where = "--data_dir" if request.data_dir is not None else \
        "the installed location"
    name = idx_file_names(prefixes, kind)[0]
    return (
        f"Fashion-MNIST not found: no {name}[.gz] in '{folder}' ({where}). "
        f"Install it with `{INSTALL_COMMAND}`, or "
        f"pass --data_dir=<folder with its four IDX files>. Received: "
        f"dataset={request.spec!r}, data_dir={request.data_dir!r}")

"""``digits``: scikit-learn's bundled 8x8 handwritten digits (no download)."""

import numpy as np

from atalp_keras.data.info import info_from_arrays
from atalp_keras.data.registry import register_source
from atalp_keras.data.splits import stratified_split


@register_source("digits", usage="digits")
def load_digits(request):
    """1,797 8x8 grayscale digits scaled by 1/16, split stratified by class
    with ``request.seed`` and ``request.test_fraction``."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = digits.images.astype(np.float32)[..., None]  # values 0..16
    labels = digits.target.astype(np.int32)
    train_idx, test_idx = stratified_split(labels, request.test_fraction,
                                           request.seed, "the digits")
    return info_from_arrays(
        "digits", (images[train_idx], labels[train_idx]),
        (images[test_idx], labels[test_idx]), scale=16.0,
        class_names=[str(i) for i in range(10)],
        image_size=request.image_size)

"""Input checks shared by the analyses: images, labels, batch sizes, and
whether a classifier exposes the stage outputs the attention analyses read."""

import numpy as np

from atalp_keras.attacks.base import check_positive_int


def check_functional(classifier, what):
    """The stage analyses need a functional model (a ``.keras`` file)."""
    try:
        inputs = getattr(classifier, "inputs", None)
    except Exception:  # Subclassed models may raise from the property.
        inputs = None
    if not inputs or not hasattr(classifier, "get_layer"):
        raise ValueError(
            f"{what} needs the classifier's stage outputs, which only a functional "
            "Keras model has (a .keras file written by train.py); a SavedModel "
            "exposes logits only. Received: classifier of type "
            f"{type(classifier).__name__}"
        )


def check_batch_size(batch_size):
    return check_positive_int(batch_size, "batch_size")


def check_images(x, name="x"):
    """``x`` as float32 ``(N, H, W, C)`` images in ``[0, 1]``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(
            f"`{name}` must be images of shape (N, H, W, C). Received: "
            f"{name}.shape={x.shape}"
        )
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(
            f"`{name}` pixels must be in [0, 1] (divide 0-255 images by 255). "
            f"Received: min={x.min():g}, max={x.max():g}"
        )
    return x


def check_labels(y, n):
    """``y`` as int32 ``(n,)`` class indices."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(
            f"Labels must have shape ({n},), one integer class per image. "
            f"Received: y.shape={y.shape}"
        )
    return y.astype(np.int32)


def numpy_cross_entropy(logits, y):
    """Per-example cross-entropy of integer labels, in float64 numpy."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -log_probs[np.arange(len(y)), y]

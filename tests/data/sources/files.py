"""Files the source tests write: images and IDX files (nothing is downloaded)."""

import gzip
import os
import struct

import keras
import numpy as np

def save_image(path, pixels):
    """Writes uint8 pixels (H, W, C) losslessly (PNG/BMP by extension)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    keras.utils.save_img(path, np.asarray(pixels, np.uint8), scale=False)


def constant_image(value, size=(5, 6), channels=3):
    return np.full(size + (channels,), value, np.uint8)


def write_idx(path, magic, array, compress):
    """Writes one IDX file of unsigned bytes, gzipped or plain."""
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.asarray(array, np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as handle:
        handle.write(payload)

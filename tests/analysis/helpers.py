"""What the analysis and analyze-CLI tests share: tiny trained models (built
once per session, whichever test module asks first), run folders with a
model card, and PNG key-region folders."""

import os

import keras
import numpy as np
import tensorflow as tf

from atalp_keras import artifacts

from atalp_keras.backbones import tiny_resnet
from atalp_keras.export import export_saved_model

_BUILT = {}


def _train_tiny_resnet(digits, seed, epochs):
    x_train, y_train, _, _ = digits
    keras.utils.set_random_seed(seed)
    model = tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    return model


def trained_resnet(digits):
    """The tiny ResNet trained 6 epochs on digits (stage ends conv2..conv5)."""
    if "resnet" not in _BUILT:
        _BUILT["resnet"] = _train_tiny_resnet(digits, seed=0, epochs=6)
    return _BUILT["resnet"]


def saved_model_files(digits, tmp_path_factory):
    """target.keras (the resnet), gray.keras (same arch, other seed),
    black.keras (another architecture) and a SavedModel of the target."""
    from conftest import small_cnn  # tests/conftest.py

    if "files" in _BUILT:
        return _BUILT["files"]
    folder = tmp_path_factory.mktemp("models")
    paths = {"target": str(folder / "target.keras"), "gray": str(folder / "gray.keras"),
             "black": str(folder / "black.keras")}
    resnet = trained_resnet(digits)
    resnet.save(paths["target"])
    _train_tiny_resnet(digits, seed=1, epochs=2).save(paths["gray"])
    black = small_cnn(seed=2)
    black.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    black.fit(digits[0], digits[1], epochs=3, batch_size=64, verbose=0)
    black.save(paths["black"])
    paths["saved_model"] = export_saved_model(resnet, str(folder / "serving"))
    _BUILT["files"] = paths
    return paths


def write_run_folder(root, model, name, **card):
    """A training run folder as train.py leaves it, as far as analyses read
    it: ``classifier.keras`` and a model card (digits unless told)."""
    folder = os.path.join(str(root), name)
    os.makedirs(folder)
    model.save(os.path.join(folder, artifacts.CLASSIFIER_FILE))
    artifacts.write_model_card(folder, artifacts.ModelCard(**{"dataset": "digits", **card}))
    return folder


def _write_png(path, array):
    tf.io.write_file(str(path), tf.io.encode_png(array.astype(np.uint8)))


def write_key_region_folders(root, digits, num=3, mask_size=8):
    """``root/images`` (test digits as PNGs) and ``root/masks`` (their bright
    pixels as 0/255, cropped to ``mask_size``)."""
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(num):
        image = digits[2][i]
        _write_png(images / f"{i}.png", np.round(image * 255))
        mask = (image > 0.5).astype(np.uint8) * 255
        _write_png(masks / f"{i}.png", mask[:mask_size, :mask_size])
    return images, masks

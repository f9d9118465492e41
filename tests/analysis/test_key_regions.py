"""atalp_keras.analysis.key_regions: attention inside key regions (Table 3)."""

import keras
import numpy as np
import pytest

from atalp_keras import analysis
from atalp_keras.analysis.key_regions import (fit_to_model, key_region_table,
                                              read_key_region_folders)
from atalp_keras.errors import UsageError


def _identity_and_pooled_classifier():
    """Stage ``identity`` is the image itself (Q = x^2 at 4x4); stage
    ``pooled`` is its 2x2 average pooling (Q = pool(x)^2 at 2x2)."""
    inputs = keras.Input((4, 4, 1))
    identity = keras.layers.Activation("linear", name="identity")(inputs)
    pooled = keras.layers.AveragePooling2D(2, name="pooled")(identity)
    logits = keras.layers.Dense(3)(keras.layers.Flatten()(pooled))
    return keras.Model(inputs, logits)


def test_key_region_activation_known_answer():
    classifier = _identity_and_pooled_classifier()
    images = np.zeros((2, 4, 4, 1), np.float32)
    images[0, :, :2] = 1.0     # left half white
    images[1, :2, :2] = 0.5    # top-left quarter grey
    masks = np.zeros((2, 4, 4), np.int64)
    masks[0, :, 1] = masks[0, :, 3] = 1
    masks[1, [0, 1, 2], [0, 1, 2]] = 1
    result = analysis.key_region_activation(classifier, images, masks,
                                            stage_layers=["identity", "pooled"])
    assert list(result) == ["identity", "pooled"]
    # identity: the max-1 map is 1 where the image is non-zero, else 0.
    #   image 0: column 1 -> 1, column 3 -> 0: mean 1/2.
    #   image 1: (0,0), (1,1) -> 1, (2,2) -> 0: mean 2/3.
    assert result["identity"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-6)
    # pooled: a 2x2 map upsampled bilinearly (half-pixel centres) to 4x4 takes
    # weights w = (1, .75, .25, 0) from the first cell along each axis.
    #   image 0: the map is w along columns: column 1 -> .75, column 3 -> 0.
    #   image 1: the map is outer(w, w): 1, .5625, .0625 on the diagonal.
    expected = (0.75 / 2 + (1 + 0.5625 + 0.0625) / 3) / 2
    assert result["pooled"] == pytest.approx(expected, abs=1e-6)


def test_key_region_masks_are_validated():
    classifier = _identity_and_pooled_classifier()
    images = np.zeros((2, 4, 4, 1), np.float32)
    good = np.ones((2, 4, 4))
    with pytest.raises(ValueError, match="2 images and 1 masks"):
        analysis.key_region_activation(classifier, images, good[:1], ["identity"])
    with pytest.raises(ValueError, match="4x4, masks of 3x4"):
        analysis.key_region_activation(classifier, images, good[:, :3], ["identity"])
    half = good.copy()
    half[0, 0, 0] = 0.5
    with pytest.raises(ValueError, match=r"binary.*Received values: 0.5, 1$"):
        analysis.key_region_activation(classifier, images, half, ["identity"])
    empty = good.copy()
    empty[1] = 0
    with pytest.raises(ValueError, match="indices: \\[1\\]"):
        analysis.key_region_activation(classifier, images, empty, ["identity"])


def test_read_folders_scales_images_and_binarises_masks(key_region_folders, digits):
    images_dir, masks_dir = key_region_folders(num=2)
    names, images, masks = read_key_region_folders(str(images_dir), str(masks_dir))
    assert names == ["0.png", "1.png"]
    np.testing.assert_allclose(images[0], np.round(digits[2][0] * 255) / 255, atol=1e-6)
    np.testing.assert_array_equal(masks[1], (digits[2][1][..., 0] > 0.5).astype(np.uint8))
    x, m = fit_to_model(images, masks, (4, 4, 3))
    assert x.shape == (2, 4, 4, 3) and m.shape == (2, 4, 4)
    assert set(np.unique(m)) <= {0, 1}


def test_read_folders_refuses_a_missing_mask(key_region_folders):
    images_dir, masks_dir = key_region_folders(num=2)
    (masks_dir / "1.png").unlink()
    with pytest.raises(UsageError, match="No mask for 1 image.*Missing: 1.png"):
        read_key_region_folders(str(images_dir), str(masks_dir))


def test_key_region_table_rows_and_columns():
    rows = [("a", "clean", {"conv2_block2_out": 0.5, "conv3_block2_out": 0.25}),
            ("a", "adversarial", {"conv2_block2_out": 0.125})]
    table = key_region_table(rows, 3, "; note")
    assert table.startswith("Mean attention inside the key regions (3 images;")
    assert "; note)" in table.splitlines()[0]
    assert "| model | input | conv2_x | conv3_x |" in table
    assert "| a | clean | 0.500 | 0.250 |" in table
    assert "| a | adversarial | 0.125 | - |" in table

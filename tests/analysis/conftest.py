"""Fixtures of the analysis tests: a tiny trained ResNet, saved models of
three kinds, run folders with model cards, and PNG key-region folders."""

import numpy as np
import pytest

from analysis import helpers


@pytest.fixture(scope="session")
def resnet(digits):
    return helpers.trained_resnet(digits)


@pytest.fixture(scope="session")
def model_files(digits, tmp_path_factory):
    return helpers.saved_model_files(digits, tmp_path_factory)


@pytest.fixture(scope="session")
def cross_entropy():
    def compute(logits, y):
        logits = np.asarray(logits, np.float64)
        logits = logits - logits.max(-1, keepdims=True)
        return np.log(np.exp(logits).sum(-1)) - logits[np.arange(len(y)), y]

    return compute


@pytest.fixture
def key_region_folders(digits, tmp_path):
    """``make(num=3, mask_size=8) -> (images_dir, masks_dir)``."""
    return lambda num=3, mask_size=8: helpers.write_key_region_folders(
        tmp_path, digits, num, mask_size)

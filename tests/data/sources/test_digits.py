"""Tests of the ``digits`` source (scikit-learn's bundled 8x8 digits)."""

import numpy as np

from atalp_keras.data import load_dataset, to_numpy


def test_digits_is_the_documented_stratified_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    info = load_dataset("digits")
    assert (info.name, info.num_classes, info.input_shape) == ("digits", 10, (8, 8, 1))
    assert (info.num_train, info.num_test) == (1437, 360)
    assert info.class_names == [str(i) for i in range(10)]
    x_test, y_test = to_numpy(info.test)
    assert x_test.dtype == np.float32 and y_test.dtype == np.int32
    raw = load_digits()
    _, x_ref, _, y_ref = train_test_split(
        raw.images[..., None] / 16.0, raw.target, test_size=0.2,
        stratify=raw.target, random_state=0)
    np.testing.assert_array_equal(x_test, x_ref.astype(np.float32))
    np.testing.assert_array_equal(y_test, y_ref)
    assert x_test.min() == 0.0 and x_test.max() == 1.0
    # Stratified: every class has 36 (+-1) of the 360 test digits.
    assert np.all(np.abs(np.bincount(y_test, minlength=10) - 36) <= 1)
    x_train, _ = to_numpy(info.train)
    assert len(x_train) == 1437


def test_digits_seed_fraction_and_resize():
    a = to_numpy(load_dataset("digits", seed=1, test_fraction=0.5).test)[1]
    b = to_numpy(load_dataset("digits", seed=2, test_fraction=0.5).test)[1]
    assert len(a) == 899 and not np.array_equal(a, b)
    info = load_dataset("digits", image_size=16)
    x, _ = to_numpy(info.train, limit=5)
    assert info.input_shape == (16, 16, 1) and x.shape == (5, 16, 16, 1)
    assert 0.0 <= x.min() and x.max() <= 1.0

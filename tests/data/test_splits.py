"""Tests of stratified splits and the fixed subsets of --max_*_examples."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.data import (select_examples, stratified_split, subset_indices, take_subset,
                              to_numpy)
from atalp_keras.errors import UsageError


def _positions(n):
    return tf.data.Dataset.range(n).map(lambda i: (tf.fill([2, 2, 1], tf.cast(i, tf.float32)), i))


def _subset_labels(limit, data_seed, n=50):
    dataset, count = take_subset(_positions(n), limit, n, data_seed)
    return count, to_numpy(dataset)[1]


def test_subset_depends_on_the_data_seed_only():
    keras.utils.set_random_seed(1)
    count, first = _subset_labels(20, data_seed=7)
    keras.utils.set_random_seed(2)  # another --seed: the same subset
    _, second = _subset_labels(20, data_seed=7)
    np.testing.assert_array_equal(first, second)
    assert count == 20 and len(np.unique(first)) == 20
    assert first.tolist() == sorted(first.tolist())  # dataset order kept
    np.testing.assert_array_equal(first, subset_indices(50, 20, 7))
    _, other = _subset_labels(20, data_seed=8)
    assert not np.array_equal(first, other)


def test_no_limit_or_a_large_one_keeps_everything():
    dataset = _positions(5)
    assert take_subset(dataset, 0, 5, 0) == (dataset, 5)
    assert take_subset(dataset, 9, 5, 0) == (dataset, 5)
    np.testing.assert_array_equal(subset_indices(5, 0, 3), np.arange(5))


def test_select_examples_keeps_order_and_knows_its_size():
    selected = select_examples(_positions(10), [7, 2, 5], 10)
    assert int(selected.cardinality()) == 3
    assert to_numpy(selected)[1].tolist() == [2, 5, 7]


def test_stratified_split_too_small_a_class_is_a_usage_error():
    with pytest.raises(UsageError, match=r"Images per class: \[3, 1\]"):
        stratified_split(np.array([0, 0, 0, 1]), 0.5, 0, "the toy data")

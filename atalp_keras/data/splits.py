"""Which examples go where: stratified train/test splits and fixed subsets.

Both depend only on the data seed they are given, never on the global random
seed (``keras.utils.set_random_seed``): models trained with different
``--seed`` values but one ``--data_seed`` see the same test set and, with
``--max_train_examples``, the same training subset, which gray-box transfer
and seed-to-seed comparisons rely on.
"""

import numpy as np
from atalp_keras.lazy import tensorflow as tf

from atalp_keras.errors import UsageError


def stratified_split(labels, test_fraction, seed, what):
    """Train/test index arrays, stratified by class, seeded by ``seed``.

    Args:
        labels: int labels ``(N,)``.
        test_fraction: Fraction of examples in the test split, in ``(0, 1)``.
        seed: The split's seed (the data seed).
        what: How messages name the data (e.g. ``"the digits"``).

    Raises:
        UsageError: If some class has too few examples to be split.
    """
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    try:
        train_idx, test_idx = train_test_split(
            indices, test_size=test_fraction, stratify=labels,
            random_state=seed)
    except ValueError as error:
        counts = np.bincount(labels)
        raise UsageError(
            f"Cannot split {what} into train/test stratified by class with "
            f"test_fraction={test_fraction}: every class needs at least 2 "
            f"images and the test set at least one image per class. Images "
            f"per class: {counts.tolist()}. ({error})"
        ) from None
    return train_idx, test_idx


def subset_indices(size, limit, data_seed):
    """The positions of the fixed random subset of ``limit`` of ``size``.

    A function of ``(size, limit, data_seed)`` only. ``limit`` of 0 (or at
    least ``size``) means all examples.

    Returns:
        Sorted int64 positions in ``[0, size)``.
    """
    if not limit or limit >= size:
        return np.arange(size, dtype=np.int64)
    rng = np.random.default_rng(data_seed)
    return np.sort(rng.choice(size, int(limit), replace=False)).astype(np.int64)


def select_examples(dataset, indices, size):
    """The examples of ``dataset`` at positions ``indices``, in dataset order.

    Args:
        dataset: Unbatched dataset of ``size`` examples.
        indices: Positions to keep (each in ``[0, size)``).
        size: Number of examples in ``dataset``.

    Returns:
        The filtered dataset, with its cardinality set to the number kept.
    """
    keep = np.zeros(int(size), bool)
    keep[np.asarray(indices, np.int64)] = True
    count = int(keep.sum())
    keep = tf.constant(keep)

    # Named functions, not two lambdas on one line: AutoGraph cannot tell
    # such lambdas apart and warns on every call.
    def kept(i, example):
        return tf.gather(keep, i)

    def drop_index(i, example):
        return example

    selected = dataset.enumerate().filter(kept).map(drop_index)
    return selected.apply(tf.data.experimental.assert_cardinality(count))


def take_subset(dataset, limit, size, data_seed):
    """A fixed random subset of ``limit`` examples (0 = all), seeded by data.

    What ``--max_train_examples`` / ``--max_test_examples`` select: the
    examples at `subset_indices` ``(size, limit, data_seed)``.

    Returns:
        ``(dataset, count)``.
    """
    if not limit or limit >= size:
        return dataset, size
    return select_examples(dataset, subset_indices(size, limit, data_seed),
                           size), int(limit)

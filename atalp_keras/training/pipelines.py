"""The data of a run: the loaded source, its fixed example subsets, the
validation split held out of the training examples, and the train /
validation / test ``tf.data`` pipelines, split evenly over replicas.

The per-epoch validation (and so ``best.keras``, ``--keep=best`` and the
overfit guard) sees only the held-out training examples; the test set is
scored once, at the end (Rice et al. 2020's model selection).
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf
from absl import logging

from atalp_keras import data
from atalp_keras.model import ATTACK_MASK
from atalp_keras.errors import UsageError
from atalp_keras.training.distribute import shard_by_example


@dataclasses.dataclass
class Pipelines:
    info: object  # The data.DatasetInfo of the source.
    train: tf.data.Dataset
    test: tf.data.Dataset
    num_train: int
    num_test: int  # Examples in the (sub)set.
    num_eval: int  # Of those, the ones evaluated (full batches per replica).
    steps_per_epoch: int
    # Per-epoch validation (None without a held-out split): `num_val`
    # held-out training examples scored clean, the first `num_val_adv` of
    # them (a fixed subset) also attacked.
    validation: tf.data.Dataset = None
    num_val: int = 0
    num_val_adv: int = 0
    # The unbatched training examples `train` draws from (the
    # --max_train_examples subset, less the validation split).
    train_examples: tf.data.Dataset = None
    # The unbatched held-out validation examples: what the overfit guard samples.
    val_examples: tf.data.Dataset = None


def load_data(config):
    """The data source of ``config``; its errors are usage errors."""
    try:
        return data.load_dataset(config.dataset, data_dir=config.data_dir,
                                 image_size=config.image_size,
                                 seed=config.data_seed)
    except ValueError as error:
        raise UsageError(str(error)) from None


def make_pipelines(config, info, replicas):
    """The train/test pipelines of ``config`` over ``replicas`` replicas.

    Training repeats with a fixed number of steps per epoch, so every worker
    runs the same number of full global batches and an epoch needs no
    end-of-data signal.
    """
    # Subsets depend on data_seed only, so runs of other seeds share them.
    train_data, num_train = data.take_subset(info.train, config.max_train_examples,
                                   info.num_train, config.data_seed)
    test_data, num_test = data.take_subset(info.test, config.max_test_examples,
                                 info.num_test, config.data_seed + 1)
    train_data, num_train, val_data, num_val = _hold_out(config, train_data, num_train)
    _check_sizes(config, num_train, num_test, replicas)
    steps_per_epoch = config.steps_per_epoch or math.ceil(
        num_train / config.batch_size)
    train = shard_by_example(data.make_pipeline(
        train_data, config.batch_size, shuffle=True,
        augment=None if config.augment == "none" else config.augment,
        seed=config.seed, drop_remainder=True, repeat=True))
    eval_batch = min(config.batch_size, num_test)
    if replicas > 1:
        # Full, evenly split batches under a strategy (the few examples past
        # the last full batch are skipped and not counted).
        eval_batch = max(replicas, eval_batch - eval_batch % replicas)
    test = shard_by_example(data.make_pipeline(
        test_data, eval_batch, drop_remainder=replicas > 1))
    num_eval = num_test if replicas == 1 else num_test - num_test % eval_batch
    if num_eval < 1:
        raise UsageError(f"{num_test} test examples cannot be split over "
                         f"{replicas} replicas.")
    validation = (None, 0, 0) if val_data is None else _validation(
        config, val_data, num_val, min(config.batch_size, num_val), replicas)
    return Pipelines(info, train, test, num_train, num_test, num_eval,
                     steps_per_epoch, *validation, train_examples=train_data,
                     val_examples=val_data)


def _hold_out(config, train_data, num_train):
    """``(train, num_train, validation, num_val)``: the fixed random
    ``validation_split`` of the training examples (seeded by data_seed, so
    runs of other seeds hold out the same ones) and the rest; validation is
    None for a split of 0."""
    if not config.validation_split:
        return train_data, num_train, None, 0
    num_val = int(round(config.validation_split * num_train))
    if num_val < 1 or num_val >= num_train:
        raise UsageError(
            f"validation_split={config.validation_split:g} of {num_train} training examples "
            f"holds out {num_val}; it must leave at least one for validation and one for "
            "training. Received: validation_split="
            f"{config.validation_split:g}")
    chosen = data.subset_indices(num_train, num_val, config.data_seed + 3)
    rest = np.setdiff1d(np.arange(num_train), chosen)
    return (data.select_examples(train_data, rest, num_train), len(rest),
            data.select_examples(train_data, chosen, num_train), num_val)


def _validation(config, val_data, num_val, batch, replicas):
    """``(pipeline, scored, attacked)`` of the per-epoch validation.

    With ``eval_adv_examples`` below the split's size, the fixed subset of
    that many validation examples (seeded by ``data_seed``) comes first, its
    batches marked for the eval attack (`ATTACK_MASK`), then the rest,
    scored clean only: the attack's cost does not grow with the split.
    """
    drop = replicas > 1
    if drop:
        batch = max(replicas, batch - batch % replicas)
    limit = config.eval_adv_examples
    if config.eval_pgd_steps == 0 or not limit or limit >= num_val:
        scored = num_val - num_val % batch if drop else num_val
        if scored < 1:
            raise UsageError(f"{num_val} validation examples cannot be split over "
                             f"{replicas} replicas; raise validation_split.")
        pipeline = data.make_pipeline(val_data, batch, drop_remainder=drop)
        return shard_by_example(pipeline), scored, scored if config.eval_pgd_steps else 0
    chosen = data.subset_indices(num_val, limit, config.data_seed + 2)
    rest = np.setdiff1d(np.arange(num_val), chosen)
    parts = []
    for indices, marked in ((chosen, 1.0), (rest, 0.0)):
        part = data.make_pipeline(data.select_examples(val_data, indices, num_val),
                                  batch, drop_remainder=drop)
        parts.append(part.map(lambda x, y, m=marked: (
            x, y, {ATTACK_MASK: tf.fill(tf.shape(y), m)})))
    # Under a strategy each part drops its last partial batch.
    attacked, scored = (n - n % batch if drop else n for n in (len(chosen), len(rest)))
    if attacked == 0:
        raise UsageError(
            f"`eval_adv_examples` must be at least the global evaluation batch ({batch}) "
            "under several replicas, whose validation drops each partial batch: no "
            f"example would be attacked. Received: eval_adv_examples={limit}")
    pipeline = parts[0].concatenate(parts[1])
    return shard_by_example(pipeline), attacked + scored, attacked


def _check_sizes(config, num_train, num_test, replicas):
    if num_train < 1 or num_test < 1:
        raise UsageError(f"The dataset has {num_train} training and "
                         f"{num_test} test examples; both must be >= 1. "
                         f"Received: dataset={config.dataset!r}")
    if config.batch_size % replicas:
        raise UsageError(
            f"`batch_size` is the global batch and must be divisible by the "
            f"{replicas} replicas. Received: batch_size={config.batch_size}")
    if num_train < config.batch_size:
        logging.warning("Only %d training examples for a batch of %d: "
                        "batches repeat examples.", num_train,
                        config.batch_size)

"""The data of a run: the loaded source, its fixed example subsets and the
train/test ``tf.data`` pipelines, split evenly over replicas."""

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
    # Per-epoch validation: `num_val` test examples scored clean, the first
    # `num_val_adv` of them (a fixed subset) also attacked.
    validation: tf.data.Dataset = None
    num_val: int = 0
    num_val_adv: int = 0
    # The unbatched training examples `train` draws from (the
    # --max_train_examples subset): what the overfit guard samples.
    train_examples: tf.data.Dataset = None


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
    validation = _validation(config, test_data, num_test, eval_batch, replicas > 1)
    if validation is None:
        validation = (test, num_eval, num_eval if config.eval_pgd_steps else 0)
    return Pipelines(info, train, test, num_train, num_test, num_eval,
                     steps_per_epoch, *validation, train_examples=train_data)


def _validation(config, test_data, num_test, batch, drop):
    """``(pipeline, scored, attacked)`` of the per-epoch validation, or None
    when it is the test pipeline itself.

    With ``eval_adv_examples`` below the test set's size, the fixed subset
    of that many test examples (seeded by ``data_seed``) comes first, its
    batches marked for the eval attack (`ATTACK_MASK`), then the rest,
    scored clean only: the attack's cost no longer grows with the test set.
    """
    limit = config.eval_adv_examples
    if config.eval_pgd_steps == 0 or not limit or limit >= num_test:
        return None
    chosen = data.subset_indices(num_test, limit, config.data_seed + 2)
    rest = np.setdiff1d(np.arange(num_test), chosen)
    parts = []
    for indices, marked in ((chosen, 1.0), (rest, 0.0)):
        part = data.make_pipeline(data.select_examples(test_data, indices, num_test),
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

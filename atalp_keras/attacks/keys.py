"""Per-example keyed randomness for the attacks that must not depend on their batch.

A counter-based generator: every random number is a hash of (example key,
counter, lane), so a draw for one example never depends on the others in the
batch, on the batch size, or on which other points are attacked with it. The
mixer is splitmix64's finaliser (a bijection on 64 bits). APGD, FAB and Square
key each example by (base key, example index, round or iteration).
"""

import numpy as np
import tensorflow as tf

_GOLDEN = 0x9E3779B97F4A7C15
_LANE = 0xD1B54A32D192ED03


def _u64(value):
    return tf.constant(value, tf.uint64)


def _mix64(z):
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(30)))
    z = z * _u64(0xBF58476D1CE4E5B9)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(27)))
    z = z * _u64(0x94D049BB133111EB)
    return tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(31)))


def _as_u64(value):
    value = tf.convert_to_tensor(value)
    if value.dtype == tf.uint64:
        return value
    return tf.cast(tf.cast(value, tf.int64), tf.uint64)


def draw_base_key(rng):
    """A fresh base key from a numpy ``Generator`` (one per ``perturb`` call)."""
    return int(rng.integers(0, 2 ** 62))


def example_keys(base, ids):
    """One 64-bit key per example from a base key and the examples' indices."""
    return _mix64(_as_u64(base) + (_as_u64(ids) + _u64(1)) * _u64(_GOLDEN))


def fold_key(keys, value):
    """Derives independent keys (one per round, per step, ...) from ``keys``."""
    salt = _mix64((_as_u64(value) + _u64(1)) * _u64(_LANE))
    return _mix64(tf.bitwise.bitwise_xor(_as_u64(keys), salt))


def keyed_uniform(keys, shape):
    """Uniform [0, 1) floats of shape ``(len(keys),) + shape``, one stream per key."""
    shape = [int(d) for d in shape]
    size = max(int(np.prod(shape)), 1)
    lanes = tf.cast(tf.range(1, size + 1, dtype=tf.int64), tf.uint64)
    z = _mix64(_as_u64(keys)[:, None] + lanes[None, :] * _u64(_GOLDEN))
    u = tf.cast(tf.bitwise.right_shift(z, _u64(40)), tf.float32) * (1.0 / 2 ** 24)
    return tf.reshape(u, [-1] + shape)

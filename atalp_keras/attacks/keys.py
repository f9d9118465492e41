"""Per-example keyed randomness for the attacks that must not depend on their batch.

A counter-based generator: every random number is a hash of (example key,
counter, lane), so a draw for one example never depends on the others in the
batch, on the batch size, or on which other points are attacked with it. The
mixer is splitmix64's finaliser (a bijection on 64 bits). APGD, FAB and Square
key each example by (base key, example index, round or iteration).

The 64-bit arithmetic is the backend's (``atalp_keras.backend``): one uint64
per key on TensorFlow, a ``(hi, lo)`` uint32 pair on JAX; both backends draw
the same numbers. Keys leave a compiled function as numpy arrays of
``(N,) + KEY_SHAPE`` and go back in as they are.
"""

from atalp_keras import backend

# The signature entry of a batch of keys in a compiled function.
KEY_SPEC = ((None,) + backend.KEY_SHAPE, backend.KEY_DTYPE)


def draw_base_key(rng):
    """A fresh base key from a numpy ``Generator`` (one per ``perturb`` call)."""
    return int(rng.integers(0, 2 ** 62))


def example_keys(base, ids):
    """One 64-bit key per example from a base key and the examples' indices."""
    return backend.example_keys(base, ids)


def fold_key(keys, value):
    """Derives independent keys (one per round, per step, ...) from ``keys``."""
    return backend.fold_key(keys, value)


def keyed_uniform(keys, shape):
    """Uniform [0, 1) floats of shape ``(len(keys),) + shape``, one stream per key."""
    return backend.keyed_uniform(keys, [int(d) for d in shape])

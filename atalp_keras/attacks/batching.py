"""Batched inference: the one place arrays are cut into batches and a
classifier's logits are computed for them.

``predict_logits(classifier, x, batch_size)`` compiles one function per
classifier and image shape (`atalp_keras.backend.compiled`: on TensorFlow a
``tf.function`` with the batch dimension free, so no retrace for a new batch
size; on JAX a ``jax.jit`` over the classifier's current weights) and keeps it
for as long as the classifier lives, so repeated evaluation, AutoAttack stages
and audits do not trace again.
"""

import weakref

import numpy as np

from atalp_keras import backend
from atalp_keras.attacks.primitives import model_logits

_COMPILED = weakref.WeakKeyDictionary()


def batch_slices(n, batch_size):
    """``slice`` objects covering ``range(n)`` in order, ``batch_size`` at a time."""
    batch_size = max(int(batch_size), 1)
    return [slice(start, start + batch_size) for start in range(0, n, batch_size)]


# On JAX each new batch shape compiles the attack again (TensorFlow's
# signatures leave the batch dimension free). The attacks' drivers call with
# ever-changing sizes (the points still robust after a round, RayS's open
# points), so there a batch is padded to the next power of two (at least
# MIN_PADDED, at most batch_size): a handful of compiled shapes per function,
# for at most twice the examples of compute.
MIN_PADDED = 8


def padded_size(n, batch_size):
    """The batch size ``n`` examples are padded to on JAX (``n`` on TensorFlow)."""
    if backend.NAME != "jax" or n == 0:
        return n
    return max(n, min(int(batch_size), max(MIN_PADDED, 1 << (n - 1).bit_length())))


def _padded(batch, size):
    """``batch`` with its last example repeated up to ``size`` rows.

    Repeating a real example (not zeros) keeps a batch's "every point done"
    early stops (APGD, FAB, Square) as they were; each attack's result is
    per example, so the copies' outputs are dropped.
    """
    n = len(batch)
    if size == n:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - n, axis=0)], axis=0)


def map_batches(fn, arrays, batch_size, progress=None):
    """Applies ``fn`` to aligned slices of ``arrays`` and concatenates each output.

    Args:
        fn: ``fn(*batch) -> array or tuple of arrays``, each output with one
            row per example (on JAX a batch may be padded, `padded_size`).
        arrays: Equal-length arrays, sliced together along axis 0.
        batch_size: Examples per call.
        progress: Optional `Progress`; advanced by each batch's size.

    Returns:
        A list with one concatenated numpy array per output of ``fn``.
    """
    outs = None
    for part in batch_slices(len(arrays[0]), batch_size):
        batch = [np.asarray(a[part]) for a in arrays]
        n = len(batch[0])
        size = padded_size(n, batch_size)
        result = fn(*[_padded(b, size) for b in batch])
        if not isinstance(result, (tuple, list)):
            result = (result,)
        result = [np.asarray(r)[:n] for r in result]
        outs = [[r] for r in result] if outs is None else [o + [r] for o, r in zip(outs, result)]
        if progress is not None:
            progress.add(len(result[0]))
    return [np.concatenate(o, axis=0) for o in outs or []]


def compiled_logits(classifier, image_shape):
    """The cached compiled function ``x -> float32 logits`` of ``classifier``."""
    shape = (None,) + tuple(int(d) for d in image_shape)
    try:
        per_shape = _COMPILED.setdefault(classifier, {})
        ref = weakref.ref(classifier)
    except TypeError:  # not weakly referenceable: compile for this call only
        per_shape, ref = {}, (lambda: classifier)
    if shape not in per_shape:
        # Through a weak reference, so the cache never keeps a model alive.
        per_shape[shape] = backend.compiled(lambda xb: model_logits(ref(), xb),
                                            [(shape, "float32")],
                                            stateful=lambda: (ref(),))
    return per_shape[shape]


def predict_logits(classifier, x, batch_size=256):
    """Logits of ``classifier`` on images ``x`` (numpy, ``(N, K)`` float32).

    Args:
        classifier: Callable ``classifier(x, training=False) -> logits``.
        x: Images ``(N, ...)``, float32 in [0, 1].
        batch_size: Examples per compiled call.
    """
    x = np.asarray(x, np.float32)
    fn = compiled_logits(classifier, x.shape[1:])
    if len(x) == 0:
        # The number of classes, from a call on one blank image.
        num_classes = np.asarray(fn(np.zeros((1,) + x.shape[1:], np.float32))).shape[-1]
        return np.zeros((0, num_classes), np.float32)
    return map_batches(fn, [x], batch_size)[0]


def predict_classes(classifier, x, batch_size=256):
    """``argmax`` of `predict_logits` (``(N,)`` int)."""
    return predict_logits(classifier, x, batch_size).argmax(axis=-1)

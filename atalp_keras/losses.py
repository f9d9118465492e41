"""Per-example loss terms of METHOD.md: cross-entropy, ALP, TRADES KL.

Every function returns one value per example (shape ``(B,)``); `weighted_mean`
reduces them, so the reduction and the distribution scaling live in one place.
"""

from atalp_keras.lazy import tensorflow as tf
from keras import ops


def cross_entropy(labels, logits):
    """Softmax cross-entropy from logits, per example."""
    logits = ops.cast(logits, "float32")
    log_probs = ops.log_softmax(logits, axis=-1)
    labels = ops.cast(labels, "int32")
    picked = ops.take_along_axis(log_probs, ops.expand_dims(labels, -1), axis=-1)
    return -ops.squeeze(picked, axis=-1)


def alp_loss(logits_natural, logits_adv):
    """Adversarial logit pairing (Kannan et al. 2018), L2 form.

    ``mean over classes of (f(x) - f(x_adv))^2`` for each example; averaged
    over the batch by the caller.
    """
    diff = ops.cast(logits_natural, "float32") - ops.cast(logits_adv, "float32")
    return ops.mean(ops.square(diff), axis=-1)


def trades_kl(logits_natural, logits_adv):
    """``KL(softmax(f(x)) || softmax(f(x_adv)))`` per example (Zhang et al. 2019)."""
    log_p = ops.log_softmax(ops.cast(logits_natural, "float32"), axis=-1)
    log_q = ops.log_softmax(ops.cast(logits_adv, "float32"), axis=-1)
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def replicas_in_sync():
    """Replicas of the current ``tf.distribute`` strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def _global_sum(value):
    """Sum of ``value`` over the replicas in sync (itself on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce("sum", value)


def weighted_mean(values, sample_weight):
    """This replica's share of the global-batch weighted mean of ``values``.

    ``sum(w * v) / sum(w)`` with both sums over the global batch (Keras'
    ``sample_weight``/``class_weight`` semantics of a weighted per-example mean),
    so the replicas' shares add up to the single-device value. Without weights
    it is ``mean(v) / replicas``. A batch whose weights are all 0 gives 0.
    """
    if sample_weight is None:
        return ops.mean(values) / replicas_in_sync()
    sample_weight = ops.cast(sample_weight, values.dtype)
    total = tf.stop_gradient(_global_sum(ops.sum(sample_weight)))
    return ops.sum(sample_weight * values) / ops.maximum(total, 1e-12)

"""Per-example loss terms of METHOD.md: cross-entropy, ALP, TRADES KL.

Every function returns one value per example (shape ``(B,)``); the model reduces
them, so the reduction and the distribution scaling live in one place.
"""

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

"""Per-example loss terms of METHOD.md: cross-entropy, ALP, TRADES KL, MART.

Every function returns one value per example (shape ``(B,)``); `weighted_mean`
reduces them, so the reduction and the distribution scaling live in one place.
"""

from keras import ops

from atalp_keras import backend


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


# MART's guards against log(0) (Wang et al. 2020, YisenWang/MART): the boosted
# term reads log(1.0001 - p + 1e-12), the KL weight 1.0000001 - p_y.
_MART_BOOST_OFFSET = 1.0001
_MART_LOG_FLOOR = 1e-12
_MART_WEIGHT_OFFSET = 1.0000001


def mart_boosted_ce(labels, logits_adv):
    """MART's boosted cross-entropy on the adversarial example, per example.

    ``CE(f(x_adv), y) - log(1 - max_{k != y} p_k(x_adv))``: the usual CE plus a
    margin term that pushes down the most likely wrong class (Wang et al.,
    "Improving Adversarial Robustness Requires Revisiting Misclassified
    Examples", ICLR 2020, eq. 5).
    """
    logits_adv = ops.cast(logits_adv, "float32")
    probs = ops.softmax(logits_adv, axis=-1)
    labels = ops.cast(labels, "int32")
    true_class = ops.one_hot(labels, ops.shape(probs)[-1], dtype="float32")
    # The most likely class other than y (the true class is masked to -1).
    wrong = ops.max(probs * (1.0 - true_class) - true_class, axis=-1)
    margin = -ops.log(_MART_BOOST_OFFSET - wrong + _MART_LOG_FLOOR)
    return cross_entropy(labels, logits_adv) + margin


def mart_weighted_kl(labels, logits_natural, logits_adv):
    """MART's regulariser per example: ``KL(p(x) || p(x_adv)) (1 - p_y(x))``.

    The KL is weighted by how badly the clean example is classified, so
    misclassified examples count most (Wang et al. 2020, eq. 7). The KL reads
    ``log(p(x_adv) + 1e-12)`` as MART's code does.
    """
    logits_natural = ops.cast(logits_natural, "float32")
    probs_nat = ops.softmax(logits_natural, axis=-1)
    log_nat = ops.log_softmax(logits_natural, axis=-1)
    log_adv = ops.log(ops.softmax(ops.cast(logits_adv, "float32"), axis=-1) + _MART_LOG_FLOOR)
    kl = ops.sum(probs_nat * (log_nat - log_adv), axis=-1)
    labels = ops.expand_dims(ops.cast(labels, "int32"), -1)
    true_prob = ops.squeeze(ops.take_along_axis(probs_nat, labels, axis=-1), axis=-1)
    return kl * (_MART_WEIGHT_OFFSET - true_prob)


def replicas_in_sync():
    """Replicas of the current ``tf.distribute`` strategy (1 without one, and
    on JAX)."""
    return backend.replicas_in_sync()


def global_sum(value):
    """Sum of ``value`` (a tensor or a list of them) over the replicas in sync
    (itself on one device)."""
    return backend.global_sum(value)


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
    total = backend.stop_gradient(global_sum(ops.sum(sample_weight)))
    return ops.sum(sample_weight * values) / ops.maximum(total, 1e-12)

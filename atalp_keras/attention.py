"""Spatial attention maps (Zagoruyko & Komodakis 2017) and the AT pairing term.

For a stage output ``A`` of shape ``(B, H, W, C)``::

    Q     = sum_c |A[..., c]|^p      (B, H, W)
    q_hat = flatten(Q) / max(||flatten(Q)||_2, 1e-12)

and the attention-pairing loss of AT + ALP is, per example,
``sum over stages of ||q_hat(x) - q_hat(x_adv)||_p``.
"""

from keras import ops


def attention_map(features, p=2):
    """Normalised, flattened attention map of a stage output.

    Args:
        features: ``(B, H, W, C)`` stage output.
        p: Power applied to absolute activations before summing channels.

    Returns:
        ``(B, H * W)`` float32, each row of unit L2 norm (or all zeros).
    """
    features = ops.cast(features, "float32")
    # p = 2 (the paper's) as a square: the same values, and cheaper than a
    # float power forward and backward over the largest stage outputs.
    powered = ops.square(features) if p == 2 else ops.power(ops.abs(features), p)
    q = ops.sum(powered, axis=-1)
    q = ops.reshape(q, (ops.shape(q)[0], -1))
    norm = ops.sqrt(ops.sum(ops.square(q), axis=-1, keepdims=True))
    return q / ops.maximum(norm, 1e-12)


def _safe_norm(v, p):
    """||v||_p per row, with a zero (not NaN) gradient where v == 0."""
    total = ops.sum(ops.power(ops.abs(v), p), axis=-1)
    positive = total > 0
    safe_total = ops.where(positive, total, ops.ones_like(total))
    return ops.where(positive, ops.power(safe_total, 1.0 / p), ops.zeros_like(total))


def attention_pairing_loss(stages_natural, stages_adv, p=2):
    """The AT term: per example, sum over stages of ``||q_hat(x) - q_hat(x_adv)||_p``.

    Args:
        stages_natural: List of ``(B, H, W, C)`` stage outputs for clean inputs.
        stages_adv: The same stages for the adversarial inputs.
        p: Power of the attention map and norm of the difference (paper: 2).

    Returns:
        ``(B,)`` float32.
    """
    if len(stages_natural) != len(stages_adv):
        raise ValueError(
            "Clean and adversarial stage lists differ in length. Received: "
            f"{len(stages_natural)} and {len(stages_adv)}"
        )
    total = 0.0
    for a_nat, a_adv in zip(stages_natural, stages_adv):
        diff = attention_map(a_nat, p) - attention_map(a_adv, p)
        total = total + _safe_norm(diff, p)
    return total


def stacked_pairing_loss(stages, p=2):
    """The AT term from stage outputs of ``concat([x, x_adv])``, per example.

    Same value as `attention_pairing_loss` on the two halves, but the split is
    taken of the small ``(2B, H * W)`` maps, not of the ``(2B, H, W, C)`` stage
    outputs, so the halves are never copied out.

    Args:
        stages: List of ``(2B, H, W, C)`` stage outputs, clean half first.
        p: Power of the attention map and norm of the difference.

    Returns:
        ``(B,)`` float32.
    """
    total = 0.0
    for features in stages:
        q_nat, q_adv = ops.split(attention_map(features, p), 2, axis=0)
        total = total + _safe_norm(q_nat - q_adv, p)
    return total

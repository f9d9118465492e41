"""The small pieces every L-inf attack is made of: argument checks, the
projection onto the eps-ball and the [0, 1] box, the input gradient and the
one way a model is called. Backend-specific pieces (gradients, loops,
compilation, keyed random numbers) come from `atalp_keras.backend`.

Conventions (see METHOD.md): pixels live in ``[0, 1]``, ``eps``/``step_size``
are on the same scale, ``model(x, training=False)`` returns logits.
"""

import math

import numpy as np
from keras import ops

from atalp_keras.errors import UsageError
from atalp_keras.folding import attack_view
from atalp_keras.lazy import tensorflow as tf
from atalp_keras.trace_switch import TraceSwitch


def check_eps(value, name="eps"):
    """Validates a perturbation size given on the [0, 1] pixel scale.

    Args:
        value: The number to check.
        name: The argument name used in the error message.

    Returns:
        ``value`` as a Python float.

    Raises:
        UsageError: If ``value`` is not a finite number in ``(0, 1]``.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"`{name}` must be a number in (0, 1] on the [0, 1] pixel scale. "
            f"Received: {name}={value!r}"
        ) from None
    if not math.isfinite(number) or number <= 0 or number > 1:
        hint = ""
        if math.isfinite(number) and 1 < number <= 255:
            hint = (
                f" It looks like a value on the 0-255 scale: did you mean "
                f"{name}={number:g}/255 = {number / 255:.6f}?"
            )
        raise UsageError(
            f"`{name}` must be in (0, 1] because images are scaled to [0, 1]. "
            f"Received: {name}={value!r}.{hint}"
        )
    return number


def check_positive_int(value, name):
    """Validates a count such as ``num_steps`` or ``restarts``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    return int(value)


def check_fraction(value, name, low=0.0, high=1.0, include_low=False):
    """Validates a number in ``(low, high]`` (or ``[low, high]``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    inside = (low <= number if include_low else low < number) and number <= high
    if not inside:
        bracket = "[" if include_low else "("
        raise UsageError(f"`{name}` must be in {bracket}{low:g}, {high:g}]. "
                         f"Received: {name}={value!r}")
    return number


def project_linf(x_adv, x_natural, eps):
    """Projects ``x_adv`` onto the L-inf ball of radius ``eps`` around
    ``x_natural`` intersected with the [0, 1] box."""
    x_adv = ops.clip(x_adv, x_natural - eps, x_natural + eps)
    return ops.clip(x_adv, 0.0, 1.0)


def input_gradient(tape, target, x):
    """``d target / d x`` from a TensorFlow ``GradientTape``, with zeros where
    the model has no gradient path (non-differentiable ops): such a model is
    not an error but a masked gradient, which the audit reports.

    TensorFlow only (the audit and the loss landscapes use it); the attacks
    use `atalp_keras.backend.value_and_grad`, the same on every backend.
    """
    return tape.gradient(target, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def model_logits(model, x):
    """Calls ``model`` the way every attack must: inference mode, float32 logits.

    A functional model is called through its folded view
    (`atalp_keras.folding.attack_view`): the same function of ``x`` with each
    BatchNorm folded into its convolution, which makes an attack step cheaper.
    """
    return ops.cast(attack_view(model)(x, training=False), "float32")


def per_example(mask, x):
    """Reshapes a per-example vector so it broadcasts against the batch ``x``."""
    return ops.reshape(mask, (-1,) + (1,) * (len(x.shape) - 1))


# Whether the attack being traced unrolls its few steps in the graph. The model's
# train_step/test_step and XLA-compiled `perturb` calls do: under XLA on CPU a
# tf.while_loop of PGD-7 cost 3x the unrolled steps (docs/benchmarks.md), and a
# step function is traced once per fit. Other `perturb` calls (evaluation) loop:
# unrolled, each short attack traces every step again (the audit's PGD-10 x 5
# restarts traced 50 steps, most of an evaluation's time on small models).
_UNROLL = TraceSwitch(False)


def unrolled_steps(enabled):
    """Attacks traced inside unroll (``enabled``) or loop their steps.

    Example (an attack inside your own XLA-compiled function):

        >>> @tf.function(jit_compile=True)
        ... def adversarial(x, y):
        ...     with atalp_keras.unrolled_steps(True):
        ...         return attack(classifier, x, y)
    """
    return _UNROLL.scope(enabled)


def unrolling_steps():
    """True inside ``unrolled_steps(True)``."""
    return _UNROLL.enabled()

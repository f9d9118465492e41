"""Shared pieces of every L-inf attack: argument checks, projection, the base class.

An attack is a callable object: ``attack(model, x, y) -> x_adv``. The call is
graph-safe (it can run inside ``train_step`` or any ``tf.function``); ``perturb``
is the compiled, batched entry point for evaluation on arrays.

Conventions (see METHOD.md): pixels live in ``[0, 1]``, ``eps``/``step_size`` are on
the same scale, ``model(x, training=False)`` returns logits.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops


def check_eps(value, name="eps"):
    """Validates a perturbation size given on the [0, 1] pixel scale.

    Args:
        value: The number to check.
        name: The argument name used in the error message.

    Returns:
        ``value`` as a Python float.

    Raises:
        ValueError: If ``value`` is not a finite number in ``(0, 1]``.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
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
        raise ValueError(
            f"`{name}` must be in (0, 1] because images are scaled to [0, 1]. "
            f"Received: {name}={value!r}.{hint}"
        )
    return number


def check_positive_int(value, name):
    """Validates a count such as ``num_steps`` or ``restarts``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"`{name}` must be an integer >= 1. Received: {name}={value!r}"
        )
    return int(value)


def project_linf(x_adv, x_natural, eps):
    """Projects ``x_adv`` onto the L-inf ball of radius ``eps`` around
    ``x_natural`` intersected with the [0, 1] box."""
    x_adv = ops.clip(x_adv, x_natural - eps, x_natural + eps)
    return ops.clip(x_adv, 0.0, 1.0)


def input_gradient(tape, target, x):
    """``d target / d x``, with zeros where the model has no gradient path
    (non-differentiable ops): such a model is not an error but a masked
    gradient, which the audit reports."""
    return tape.gradient(target, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def model_logits(model, x):
    """Calls ``model`` the way every attack must: inference mode, float32 logits."""
    return ops.cast(model(x, training=False), "float32")


class Attack:
    """Base class of the package's attacks.

    Subclasses implement ``__call__(model, x, y)`` with graph-safe ops and
    ``get_config()``; they inherit ``perturb`` (compiled, batched, on arrays).

    Args:
        eps: L-inf radius on the [0, 1] scale.
        seed: Optional int seeding the attack's ``keras.random.SeedGenerator``.
    """

    name = "attack"

    def __init__(self, eps, seed=None):
        self.eps = check_eps(eps, "eps")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._compiled = {}

    def __call__(self, model, x, y):
        raise NotImplementedError

    def get_config(self):
        return {"eps": self.eps, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def describe(self):
        """The settings a robust-accuracy number must be reported with."""
        config = self.get_config()
        config.pop("seed", None)
        return {"attack": self.name, **config}

    def perturb(self, model, x, y, batch_size=256, jit_compile=False):
        """Runs the attack on arrays in batches, compiled once per model.

        Args:
            model: Callable ``model(x, training=False) -> logits``.
            x: Images, float in [0, 1], shape ``(N, H, W, C)``.
            y: Integer labels (or target labels for targeted attacks), ``(N,)``.
            batch_size: Examples per compiled call.
            jit_compile: Compile the attack with XLA.

        Returns:
            A numpy array of adversarial images, same shape as ``x``.
        """
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y)
        key = (id(model), bool(jit_compile), x.shape[1:], y.dtype)
        if key not in self._compiled:
            # One trace per model and image shape, whatever the batch size.
            signature = [
                tf.TensorSpec((None,) + x.shape[1:], tf.float32),
                tf.TensorSpec((None,), tf.as_dtype(y.dtype)),
            ]
            self._compiled[key] = tf.function(
                lambda xb, yb: self(model, xb, yb),
                input_signature=signature,
                jit_compile=jit_compile,
            )
        fn = self._compiled[key]
        out = []
        for start in range(0, len(x), batch_size):
            out.append(
                np.asarray(fn(x[start:start + batch_size], y[start:start + batch_size]))
            )
        return np.concatenate(out, axis=0) if out else x.copy()

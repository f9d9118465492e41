"""Adversarial weight perturbation (AWP; Wu, Xia & Wang, "Adversarial Weight
Perturbation Helps Robust Generalization", NeurIPS 2020).

After the adversarial batch is crafted, AWP takes one ascent step on the
training loss in weight space, rescales it per layer to ``gamma`` times that
layer's weight norm, and takes the real gradient step at the perturbed
weights; the update is then applied to the unperturbed weights. Only
conv/dense kernels are perturbed (variables of rank >= 2), never biases or
BatchNorm parameters, as in csdongxian/AWP.

This module holds the math, in ``keras.ops``; `ATALPModel.train_step` calls it
and owns the gradients.
"""

import keras
from keras import ops

from atalp_keras.errors import UsageError

# Guards the division by the ascent step's norm (the official code's 1e-20).
_NORM_FLOOR = 1e-20


def check_settings(gamma, warmup_epochs):
    """``(gamma, warmup_epochs)`` as float and int, checked.

    Raises:
        UsageError: For a gamma that is not a finite number in [0, 1) or a
            warm-up that is not an integer >= 0.
    """
    try:
        gamma = float(gamma)
    except (TypeError, ValueError):
        gamma = float("nan")
    if not 0.0 <= gamma < 1.0:
        raise UsageError("`awp_gamma` is the size of the weight perturbation relative to each "
                         "layer's weight norm: a number in [0, 1), e.g. 0.01 (AT-AWP) or 0.005 "
                         f"(TRADES-AWP); 0 turns AWP off. Received: awp_gamma={gamma!r}")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) \
            or warmup_epochs < 0:
        raise UsageError("`awp_warmup_epochs` must be an integer >= 0 (epochs trained without "
                         f"the perturbation first). Received: awp_warmup_epochs={warmup_epochs!r}")
    return gamma, warmup_epochs


def perturbed_indices(variables):
    """Positions in ``variables`` of the kernels AWP perturbs (rank >= 2)."""
    return [i for i, v in enumerate(variables) if len(v.shape) >= 2]


def weight_perturbation(kernels, ascent_grads, gamma):
    """Per-layer perturbations ``gamma ||w|| g / ||g||``, one per kernel.

    Args:
        kernels: The kernel values ``w`` (variables or tensors).
        ascent_grads: The gradients ``g`` of the training loss at ``w``
            (any positive scale: the step is renormalised).
        gamma: The perturbation's size relative to each layer's norm.

    Returns:
        A list of tensors shaped like ``kernels``. A layer whose gradient is
        not finite (an overflow of a mixed-precision loss scale) or zero gets
        a zero perturbation.
    """
    out = []
    for w, g in zip(kernels, ascent_grads):
        w = ops.convert_to_tensor(w)
        if g is None:
            out.append(ops.zeros_like(w))
            continue
        g = ops.cast(g, w.dtype)
        g_norm = ops.sqrt(ops.sum(ops.square(g)))
        scale = gamma * ops.sqrt(ops.sum(ops.square(w))) / (g_norm + _NORM_FLOOR)
        step = scale * g
        out.append(ops.where(ops.isfinite(g_norm), step, ops.zeros_like(w)))
    return out


class AWPWarmup(keras.callbacks.Callback):
    """Turns AWP on from epoch ``warmup_epochs`` (0-based) of ``fit``.

    The switch is read when the train step is traced, so the warm-up epochs
    run the plain step at its full speed; the step is traced again once, when
    the perturbation starts. A resumed ``fit`` (``initial_epoch``,
    ``BackupAndRestore``) gets the setting of the epoch it resumes at.
    """

    def __init__(self, warmup_epochs):
        super().__init__()
        self.warmup_epochs = warmup_epochs

    def on_epoch_begin(self, epoch, logs=None):
        active = epoch >= self.warmup_epochs
        if active != self.model._awp_active:
            self.model._awp_active = active
            self.model.make_train_function(force=True)


class DivergenceGuard(keras.callbacks.Callback):
    """Stops ``fit`` with a clear error when the training loss is NaN, inf or
    above ``max_loss`` (e.g. AWP with a gamma too large for the learning rate).

    The loss log is a running mean over the epoch, so once a batch's loss is
    NaN every later value is too: checking every ``every`` batches and at the
    epoch's end catches it without a device sync per step. The epoch in which
    it happens is not checkpointed by the run's callbacks, so the last
    checkpoint still holds usable weights.
    """

    def __init__(self, max_loss=1e4, every=20, hint=""):
        super().__init__()
        self.max_loss = float(max_loss)
        self.every = int(every)
        self.hint = hint
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every == 0:
            self._check(logs, f"batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, "its end")

    def _check(self, logs, where):
        if not logs or "loss" not in logs:
            return
        loss = float(ops.convert_to_numpy(logs["loss"]))
        if loss == loss and abs(loss) <= self.max_loss:  # finite and not exploding
            return
        self.model.stop_training = True
        raise TrainingDivergedError(
            f"Training diverged in epoch {self._epoch + 1} at {where}: the mean training loss "
            f"is {loss!r} (expected a finite value below {self.max_loss:g}). The weights in "
            "memory are no longer usable and this epoch is not saved; earlier checkpoints "
            f"are kept. {self.hint}".rstrip())


class TrainingDivergedError(UsageError):
    """The training loss became NaN/inf or exploded: a setting to change
    (learning rate, ``awp_gamma``), not a bug, so the CLIs report it in one
    line."""

"""The optimiser of a run: SGD or Adam, the learning-rate schedule, mixed
precision loss scaling, and the coupled L2 weight decay.

Weight decay is the classic coupled L2 penalty (what ``torch.optim.SGD(...,
weight_decay=wd)`` in the paper's reference code does): ``wd / 2 * ||W||^2`` is
added to the loss for every convolution and dense kernel (not biases, not
BatchNorm), so each kernel's gradient gains ``wd * W`` and the decay passes
through the momentum like the rest of the gradient. It is attached to the
kernels of any classifier (built-in backbones, ``keras.applications``
ResNets, a user's ``.keras`` model), replacing regularizers already there.
"""

import keras

_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def _kernel_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _kernel_layers(layer)
        else:
            yield layer


def add_weight_decay(classifier, weight_decay):
    """Adds the coupled L2 penalty ``weight_decay / 2 * ||W||^2`` to every
    convolution / dense kernel of ``classifier`` (gradient ``+ wd * W``).

    Returns:
        The number of kernels regularised.
    """
    count = 0
    regularizer = keras.regularizers.L2(weight_decay / 2) \
        if weight_decay > 0 else None
    for layer in _kernel_layers(classifier):
        for attr in _KERNELS:
            variable = getattr(layer, attr, None)
            if not isinstance(variable, keras.Variable):
                continue
            variable.regularizer = regularizer
            if hasattr(layer, f"{attr}_regularizer"):
                # Keeps the penalty in the layer config (saved with .keras).
                setattr(layer, f"{attr}_regularizer", regularizer)
            count += 1
    return count


def learning_rate(config, steps_per_epoch):
    """The rate of ``config.lr_schedule``: a float or a Keras schedule."""
    lr = config.learning_rate
    if config.lr_schedule == "constant":
        return lr
    if config.lr_schedule == "piecewise":
        # Keras uses values[i + 1] once `iterations > boundaries[i]`; the
        # first step of epoch E has iterations == E * steps_per_epoch.
        boundaries = [max(0, int(round(b * steps_per_epoch)) - 1)
                      for b in config.lr_boundaries]
        values = [lr * config.lr_decay ** i
                  for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, values)
    return keras.optimizers.schedules.CosineDecay(
        lr, decay_steps=max(1, config.epochs * steps_per_epoch))


def make_optimizer(config, rate):
    """The optimiser of ``config`` with learning rate ``rate``."""
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(rate, momentum=config.momentum,
                                         nesterov=config.nesterov)
    else:
        optimizer = keras.optimizers.Adam(rate)
    if config.mixed_precision == "mixed_float16":
        # Dynamic loss scaling keeps small float16 gradients from underflowing.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def last_step_rate(rate, optimizer):
    """The rate of the last step taken (``rate``: float or schedule)."""
    if not callable(rate):
        return float(rate)
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    step = max(0, int(keras.ops.convert_to_numpy(inner.iterations)) - 1)
    return float(keras.ops.convert_to_numpy(rate(step)))

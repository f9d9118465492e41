"""What the arithmetic requires: multiply-accumulates per image and passes per training step.

Counting convention (stated once, used everywhere):
- A *forward* costs F = 2 x MACs floating-point operations per image (one
  multiply and one add per MAC), counting only convolution and dense layers;
  BatchNorm, activations, pooling and additions are ignored (a few percent
  of a ResNet's arithmetic).
- An *input-gradient pass* (one attack step) is a forward plus a backward to
  the input: about 2F. A *training pass* adds the weight gradients: about 3F.
"""

import math

from .config import PAIRED

FORWARD, INPUT_GRAD, TRAIN = 1.0, 2.0, 3.0  # cost in forwards, per image


def layer_macs(layer):
    """MACs per image of one Keras layer (0 unless it is a convolution or dense layer).

    For a kernel of shape ``(*window, in_per_group, out)`` (convolutions, depthwise
    convolutions and dense layers alike) each output position costs
    ``prod(kernel.shape)`` MACs, and there are ``prod(output.shape[1:-1])``
    positions (channels last).
    """
    import keras

    kinds = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
             keras.layers.DepthwiseConv2D, keras.layers.Dense)
    if not isinstance(layer, kinds):
        return 0
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise NotImplementedError(f"{layer.name}: only channels_last is counted")
    kernel = layer.kernel   # Keras 3 names the depthwise kernel `kernel` too
    positions = math.prod(int(d) for d in layer.output.shape[1:-1])
    return positions * math.prod(int(d) for d in kernel.shape)


def count_macs(model):
    """``{"total": MACs per image, "layers": {name: MACs}}`` of a built functional
    model; nested models are counted through."""
    import keras

    per_layer = {}

    def visit(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                visit(layer)
            else:
                macs = layer_macs(layer)
                if macs:
                    per_layer[layer.name] = macs

    visit(model)
    return {"total": sum(per_layer.values()), "layers": per_layer}


def training_passes(method, num_steps, clean_metric_forward=True):
    """Passes per (clean) image of one training step of a preset.

    Args:
        method: A preset name, or ``"reference"`` (the hand-written loop).
        num_steps: K, steps of the PGD / TRADES attack.
        clean_metric_forward: Whether ``pat``/``fast`` run an inference forward on
            the clean batch for the clean-accuracy metric (today's train_step does).

    Returns:
        ``{"input_grad", "forward", "train", "forward_equivalents"}``: attack steps,
        extra inference forwards and training passes per image, and their total in
        forwards (see the module docstring).
    """
    grad = {"standard": 0, "fast": 1}.get(method, num_steps)
    forward = 0
    if method in ("pat", "fast") and clean_metric_forward:
        forward = 1
    if method == "trades":
        forward = 1   # the clean logits: the KL target of the attack
    train = 2 if method in PAIRED else 1
    total = grad * INPUT_GRAD + forward * FORWARD + train * TRAIN
    return {"input_grad": grad, "forward": forward, "train": train,
            "forward_equivalents": total}


def predicted_batch_seconds(passes, units, xla_attack=False, xla_train=False):
    """Seconds per batch from the measured unit costs (``t_grad``, ``t_forward``,
    ``t_train`` at B, ``t_train2`` at 2B) and `training_passes`."""
    attack = "_xla" if xla_attack else ""
    train = "_xla" if xla_train else ""
    t_train = units["t_train2" + train] if passes["train"] == 2 else units["t_train" + train]
    return (passes["input_grad"] * units["t_grad" + attack]
            + passes["forward"] * units["t_forward" + attack] + t_train)


def flops_per_image(macs, passes):
    """Floating-point operations per image of one training step."""
    return 2.0 * macs * passes["forward_equivalents"]


def eval_forward_equivalents(attack_steps):
    """Forwards per image of a PGD-``attack_steps`` validation (attack + one clean
    and one adversarial forward, as test_step runs them)."""
    return attack_steps * INPUT_GRAD + 2 * FORWARD


def epoch_seconds_on_paper(macs, passes, train_images, peak_tflops, utilisation,
                           devices=1, scaling=1.0, val_images=0, val_steps=10):
    """Expected epoch time from arithmetic alone.

    ``peak_tflops * utilisation`` is the sustained rate of one device;
    ``devices`` replicas (MirroredStrategy) run at ``scaling`` efficiency each.
    Validation (PGD-``val_steps`` on ``val_images``) is added.
    """
    rate = peak_tflops * 1e12 * utilisation * devices * (scaling if devices > 1 else 1.0)
    train_flops = flops_per_image(macs, passes) * train_images
    val_flops = 2.0 * macs * eval_forward_equivalents(val_steps) * val_images
    return (train_flops + val_flops) / rate

"""Classifiers whose stage outputs (conv2_x .. conv5_x) carry known layer names.

Every builder returns a functional ``keras.Model`` from raw ``[0, 1]`` pixels to
logits (no softmax), with input normalisation inside the model, and names the
last block of stage ``s`` as ``conv{s}_block{n}_out`` like
``keras.applications`` does, so ``stage_layer_names`` finds them for all.
"""

import re

import keras
from keras import layers, ops

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# keras.applications ResNets with ImageNet weights expect caffe-style input:
# BGR, 0-255, minus these per-channel means (BGR order), no std division.
IMAGENET_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="atalp_keras")
class PixelNormalization(layers.Layer):
    """``(x * scale - mean) / std`` per channel, optionally after RGB -> BGR.

    Lives inside the model so attacks, eps and exports all work on raw [0, 1]
    pixels.
    """

    def __init__(self, mean=0.0, std=1.0, scale=1.0, reverse_channels=False, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(mean) if isinstance(mean, (list, tuple)) else float(mean)
        self.std = tuple(std) if isinstance(std, (list, tuple)) else float(std)
        self.scale = float(scale)
        self.reverse_channels = bool(reverse_channels)

    def call(self, x):
        if self.reverse_channels:
            x = ops.flip(x, axis=-1)
        mean = ops.convert_to_tensor(self.mean, dtype=x.dtype)
        std = ops.convert_to_tensor(self.std, dtype=x.dtype)
        return (x * ops.cast(self.scale, x.dtype) - mean) / std

    def get_config(self):
        return {
            **super().get_config(),
            "mean": self.mean,
            "std": self.std,
            "scale": self.scale,
            "reverse_channels": self.reverse_channels,
        }


def _conv_bn_relu(x, filters, kernel, stride, name, weight_decay, bn_kwargs, relu=True):
    reg = keras.regularizers.L2(weight_decay) if weight_decay else None
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_regularizer=reg, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn", **bn_kwargs)(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters, stride, name, weight_decay=0.0, bn_kwargs=None):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""
    bn_kwargs = bn_kwargs or {}
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, 1, stride, f"{name}_0", weight_decay,
                                 bn_kwargs, relu=False)
    y = _conv_bn_relu(x, filters, 3, stride, f"{name}_1", weight_decay, bn_kwargs)
    y = _conv_bn_relu(y, filters, 3, 1, f"{name}_2", weight_decay, bn_kwargs, relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def basic_resnet(input_shape, num_classes, blocks_per_stage, widths, strides,
                 stem_width, mean=0.0, std=1.0, weight_decay=0.0,
                 synchronized_bn=False, bn_momentum=0.99, name="resnet"):
    """A ResNet of basic blocks with a 3x3 stem and no max-pool (CIFAR style).

    Args:
        input_shape: ``(H, W, C)``.
        num_classes: Number of logits.
        blocks_per_stage: Blocks in conv2_x .. conv5_x, e.g. ``(2, 2, 2, 2)``.
        widths: Filters per stage.
        strides: Stride of the first block of each stage.
        stem_width: Filters of the 3x3 stem convolution.
        mean, std: Per-channel input normalisation applied inside the model.
        weight_decay: L2 factor on convolution and dense kernels (0 = none).
        synchronized_bn: Use ``BatchNormalization(synchronized=True)`` so that
            under a distribution strategy the statistics cover the global batch.
        bn_momentum: Momentum of the BatchNorm moving statistics.
        name: Model name.
    """
    if not (len(blocks_per_stage) == len(widths) == len(strides)):
        raise ValueError(
            "blocks_per_stage, widths and strides need one entry per stage. Received: "
            f"{blocks_per_stage}, {widths}, {strides}"
        )
    bn_kwargs = {"momentum": bn_momentum}
    if synchronized_bn:
        bn_kwargs["synchronized"] = True
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = PixelNormalization(mean, std, name="normalization")(inputs)
    x = _conv_bn_relu(x, stem_width, 3, 1, "conv1", weight_decay, bn_kwargs)
    for s, (blocks, width, stride) in enumerate(zip(blocks_per_stage, widths, strides)):
        for b in range(blocks):
            x = basic_block(x, width, stride if b == 0 else 1, f"conv{s + 2}_block{b + 1}",
                            weight_decay, bn_kwargs)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    reg = keras.regularizers.L2(weight_decay) if weight_decay else None
    # float32 logits keep softmax / CE stable under mixed precision.
    logits = layers.Dense(num_classes, kernel_regularizer=reg, dtype="float32",
                          name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def tiny_resnet(input_shape=(8, 8, 1), num_classes=10, widths=(8, 16, 16, 32),
                strides=(1, 2, 2, 1), **kwargs):
    """One basic block per stage (25k weights at the default widths, 6.6k at
    ``widths=(4, 8, 8, 16)``).

    The last stride is 1 by default so an 8x8 input still has a 2x2 map at
    conv5_x (a 1x1 attention map is constant and pairs trivially).
    """
    kwargs.setdefault("stem_width", widths[0])
    # Runs on small data are a few hundred steps: let BatchNorm statistics follow.
    kwargs.setdefault("bn_momentum", 0.9)
    kwargs.setdefault("name", "tiny_resnet")
    return basic_resnet(input_shape, num_classes, (1, 1, 1, 1), widths, strides, **kwargs)


def cifar_resnet(depth=18, input_shape=(32, 32, 3), num_classes=10, **kwargs):
    """CIFAR-style ResNet-18 / ResNet-34 (He et al. 2016; 3x3 stem, no max-pool)."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
    if depth not in blocks:
        raise ValueError(f"cifar_resnet supports depth 18 or 34. Received: depth={depth}")
    kwargs.setdefault("mean", CIFAR10_MEAN if input_shape[-1] == 3 else 0.5)
    kwargs.setdefault("std", CIFAR10_STD if input_shape[-1] == 3 else 0.25)
    kwargs.setdefault("name", f"resnet{depth}")
    return basic_resnet(input_shape, num_classes, blocks[depth], (64, 128, 256, 512),
                        (1, 2, 2, 2), stem_width=64, **kwargs)


def simple_cnn(input_shape=(8, 8, 1), num_classes=10, widths=(32, 64), name="cnn"):
    """A plain convolutional network (no residuals, no BatchNorm).

    Another architecture family than the ResNets, for black-box transfer
    sources. Its convolutions are named ``conv{2,3,..}_block1_out`` so the
    attention term and the analyses find them like ResNet stages.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = inputs
    for s, width in enumerate(widths):
        x = layers.Conv2D(width, 3, strides=1 if s == 0 else 2, padding="same",
                          activation="relu", name=f"conv{s + 2}_block1_out")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(2 * widths[-1], activation="relu", name="hidden")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


_APPLICATIONS = {
    50: "ResNet50",
    101: "ResNet101",
    152: "ResNet152",
}


def application_resnet(depth=50, input_shape=(224, 224, 3), num_classes=1000,
                       weights=None, name=None):
    """``keras.applications`` ResNet-50/101/152 with a fresh logits head.

    Args:
        depth: 50, 101 or 152.
        input_shape: ``(H, W, 3)``; at least 32x32.
        num_classes: Logits of the new head.
        weights: None (random init, no download) or ``"imagenet"`` (downloads
            the ImageNet weights once, so it needs network access) or a path.
        name: Model name.
    """
    if depth not in _APPLICATIONS:
        raise ValueError(
            f"application_resnet supports depth 50, 101 or 152. Received: depth={depth}"
        )
    if input_shape[-1] != 3:
        raise ValueError(
            f"keras.applications ResNets need 3-channel inputs. Received: input_shape={input_shape}"
        )
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = PixelNormalization(IMAGENET_CAFFE_MEAN_BGR, 1.0, scale=255.0,
                           reverse_channels=True, name="normalization")(inputs)
    # Built on our tensor (input_tensor=), so the stage layers are layers of
    # the returned classifier and can be found by name.
    base = getattr(keras.applications, _APPLICATIONS[depth])(
        include_top=False, weights=weights, input_tensor=x)
    features = base.output
    x = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name or f"resnet{depth}")


_STAGE_PATTERN = re.compile(r"^conv([2-5])_block(\d+)_out$")


def stage_layer_names(model):
    """The last block of each ResNet stage conv2_x .. conv5_x, by layer name.

    Raises:
        ValueError: If the model has none of the ``conv{s}_block{n}_out`` layers.
    """
    last = {}
    for layer in model.layers:
        match = _STAGE_PATTERN.match(layer.name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            if block >= last.get(stage, (0, ""))[0]:
                last[stage] = (block, layer.name)
    if not last:
        raise ValueError(
            f"Model {model.name!r} has no layers named conv{{2..5}}_block{{N}}_out, so "
            "its stage outputs cannot be found automatically. Pass stage_layers=[...] "
            "with the names of the layers to pair."
        )
    return [last[s][1] for s in sorted(last)]


def build_backbone(name, input_shape, num_classes, **kwargs):
    """Builds a classifier by name: tiny, cnn, resnet18, resnet34, resnet50/101/152."""
    builders = {
        "tiny": lambda: tiny_resnet(input_shape, num_classes, **kwargs),
        "cnn": lambda: simple_cnn(input_shape, num_classes, **kwargs),
        "resnet18": lambda: cifar_resnet(18, input_shape, num_classes, **kwargs),
        "resnet34": lambda: cifar_resnet(34, input_shape, num_classes, **kwargs),
        "resnet50": lambda: application_resnet(50, input_shape, num_classes, **kwargs),
        "resnet101": lambda: application_resnet(101, input_shape, num_classes, **kwargs),
        "resnet152": lambda: application_resnet(152, input_shape, num_classes, **kwargs),
    }
    if name not in builders:
        raise ValueError(
            f"Unknown model {name!r}. Expected one of: {', '.join(builders)} "
            f"(or a path to a .keras file). Received: model={name!r}"
        )
    return builders[name]()

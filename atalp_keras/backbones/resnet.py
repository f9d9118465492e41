"""ResNets of basic blocks (CIFAR style: 3x3 stem, no max-pool).

The last block of stage ``s`` is named ``conv{s}_block{n}_out`` like
``keras.applications`` does, so `stage_layer_names` finds the stages.
"""

import keras
from keras import layers

from atalp_keras.backbones.layers import (CIFAR10_MEAN, CIFAR10_STD, FusedBatchNormalization,
                                          PixelNormalization)


def _conv_bn_relu(x, filters, kernel, stride, name, weight_decay, bn_kwargs, relu=True):
    reg = keras.regularizers.L2(weight_decay) if weight_decay else None
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_regularizer=reg, name=f"{name}_conv")(x)
    bn_kwargs = dict(bn_kwargs)
    batch_norm = FusedBatchNormalization if bn_kwargs.pop("fused", True) \
        else layers.BatchNormalization
    x = batch_norm(name=f"{name}_bn", **bn_kwargs)(x)
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
                 synchronized_bn=False, bn_momentum=0.99, fused_bn=True, name="resnet"):
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
        fused_bn: Compute BatchNorm with TensorFlow's fused kernel
            (`FusedBatchNormalization`, the same weights and values as
            ``keras.layers.BatchNormalization``, faster); False uses Keras'
            layer. Under JAX both compute Keras' BatchNorm.
        name: Model name.
    """
    if not (len(blocks_per_stage) == len(widths) == len(strides)):
        raise ValueError(
            "blocks_per_stage, widths and strides need one entry per stage. Received: "
            f"{blocks_per_stage}, {widths}, {strides}"
        )
    bn_kwargs = {"momentum": bn_momentum, "fused": bool(fused_bn)}
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
                strides=(1, 2, 2, 1), blocks_per_stage=(1, 1, 1, 1), **kwargs):
    """One basic block per stage (25k weights at the default widths, 6.6k at
    ``widths=(4, 8, 8, 16)``).

    The last stride is 1 by default so an 8x8 input still has a 2x2 map at
    conv5_x (a 1x1 attention map is constant and pairs trivially).
    """
    kwargs.setdefault("stem_width", widths[0])
    # Runs on small data are a few hundred steps: let BatchNorm statistics follow.
    kwargs.setdefault("bn_momentum", 0.9)
    kwargs.setdefault("name", "tiny_resnet")
    return basic_resnet(input_shape, num_classes, blocks_per_stage, widths, strides, **kwargs)


FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530


def fmnist_resnet(input_shape=(28, 28, 1), num_classes=10, widths=(8, 16, 32, 64),
                  blocks_per_stage=(1, 1, 1, 1), **kwargs):
    """The 28x28 ResNet of the Fashion-MNIST reproduction (79k weights).

    Strides 1, 2, 2, 2 keep stage maps of 28, 14, 7 and 4 pixels, so every
    stage has an attention map worth pairing; the width grows where the maps
    are small, which is cheap. ``blocks_per_stage=(2, 2, 2, 2)`` gives the
    deeper variant used as a black-box transfer source.
    """
    kwargs.setdefault("stem_width", widths[0])
    kwargs.setdefault("mean", FASHION_MNIST_MEAN)
    kwargs.setdefault("std", FASHION_MNIST_STD)
    kwargs.setdefault("bn_momentum", 0.9)
    kwargs.setdefault("name", "fmnist_resnet")
    return basic_resnet(input_shape, num_classes, blocks_per_stage, widths, (1, 2, 2, 2),
                        **kwargs)


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

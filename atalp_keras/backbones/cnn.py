"""A plain CNN: another architecture family, for black-box transfer sources."""

import keras
from keras import layers


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

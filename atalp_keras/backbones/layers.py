"""Layers shared by the backbones: input normalisation inside the model.

Every classifier takes raw ``[0, 1]`` pixels, so attacks, eps and exports all
work on one scale; the normalisation a network expects is its first layer.
"""

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

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


# What TensorFlow's fused kernel takes. Below cuDNN's minimum epsilon Keras 2
# did not use the fused kernel either (on GPU it cannot honour the value).
_FUSED_DTYPES = ("float16", "bfloat16", "float32")
_FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="atalp_keras")
class FusedBatchNormalization(layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by TensorFlow's fused kernel.

    Keras 3 builds batch normalisation from separate ops (moments, then scale
    and shift), each one pass over the activations, forward and backward. On
    this project's CPUs that made a training pass of the 28x28 ResNet cost 1.4x
    what the fused kernel (``FusedBatchNormV3``, the kernel Keras 2 used)
    costs, and the attack's inference passes a few percent more
    (docs/benchmarks.md). The weights, their names, the moving-average update
    and the output are Keras' (to float rounding), so weights move freely
    between the two layers.

    Where the fused kernel does not apply (inputs not of rank 4 with channels
    last, a mask, ``synchronized=True``, ``renorm=True``, variables other than
    float32, ``epsilon`` below cuDNN's minimum of 1.001e-5) the layer runs
    Keras' own computation.

    Under ``KERAS_BACKEND=jax`` there is no fused kernel: the layer always
    runs Keras' computation, with the same weights and config, so a ``.keras``
    file holding it loads under either backend (tests/jax_backend/). XLA fuses
    Keras' separate ops itself; the whole JAX training step is measured by
    bench/step_jax_28x28.py (docs/benchmarks.md, "JAX").
    """

    def _fusable(self, inputs, mask):
        axis = self.axis if self.axis >= 0 else self.axis + len(inputs.shape)
        return (len(inputs.shape) == 4 and axis == 3 and mask is None and self.scale
                and self.center and not self.synchronized and not self.renorm
                and self.dtype_policy.variable_dtype == "float32"
                and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
                and self.epsilon >= _FUSED_MIN_EPSILON
                and keras.backend.backend() == "tensorflow")

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # the fused kernel is TensorFlow's own op

        # Like Keras: statistics in float32 whatever the compute dtype.
        x = ops.cast(inputs, "float32")
        gamma, beta = ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32")
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, is_training=True)[:3]
            # The kernel returns the unbiased (n - 1) variance for the moving
            # average; Keras averages the biased one it normalises with.
            count = ops.cast(ops.size(x) // ops.shape(x)[-1], "float32")
            variance = variance * (count - 1.0) / count
            self.moving_mean.assign(
                self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=ops.cast(self.moving_mean, "float32"),
                variance=ops.cast(self.moving_variance, "float32"),
                epsilon=self.epsilon, is_training=False)[0]
        return ops.cast(y, self.compute_dtype)

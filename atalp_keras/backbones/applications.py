"""``keras.applications`` ResNets with a fresh logits head."""

import keras
from keras import layers

from atalp_keras.backbones.layers import IMAGENET_CAFFE_MEAN_BGR, PixelNormalization

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

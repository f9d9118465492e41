"""The multi-output feature model: logits plus the chosen stage outputs, from
one forward pass. This is what the attention loss needs."""

import keras

from atalp_keras.backbones import stage_layer_names


def check_logits_output(classifier):
    """Refuses a classifier whose output is a softmax (attacks need logits).

    Raises:
        ValueError: naming the final layer when it applies a softmax.
    """
    if not classifier.layers:
        return
    last = classifier.layers[-1]
    activation = getattr(last, "activation", None)
    is_softmax = isinstance(last, keras.layers.Softmax) or activation in (
        keras.activations.softmax,
        getattr(keras.activations, "log_softmax", None),
    ) or (isinstance(last, keras.layers.Activation)
          and getattr(last.activation, "__name__", "") in ("softmax", "log_softmax"))
    if is_softmax:
        raise ValueError(
            f"Classifier {classifier.name!r} ends in a softmax (final layer "
            f"{last.name!r}), so it returns probabilities. Attacks and the ALP/TRADES "
            "losses need logits: remove the final softmax (e.g. Dense(K) with no "
            "activation) and apply softmax only when serving."
        )


def resolve_stage_layers(classifier, stage_layers=None):
    """Returns the stage layer names to pair, checking that each exists.

    Args:
        classifier: A functional ``keras.Model``.
        stage_layers: Names of layers whose outputs are ``(B, H, W, C)`` maps,
            or None to find ResNet stage ends (``conv{2..5}_block{N}_out``).

    Raises:
        ValueError: for an unknown name, listing the layer names that exist.
    """
    if stage_layers is None:
        return stage_layer_names(classifier)
    if isinstance(stage_layers, str):
        stage_layers = [s for s in stage_layers.split(",") if s]
    names = [layer.name for layer in classifier.layers]
    unknown = [s for s in stage_layers if s not in names]
    if unknown:
        raise ValueError(
            f"Unknown stage layer name(s) {unknown} for model {classifier.name!r}. "
            f"Layers that exist: {names}"
        )
    for s in stage_layers:
        shape = classifier.get_layer(s).output.shape
        if len(shape) != 4:
            raise ValueError(
                f"Stage layer {s!r} must output a 4-D (batch, H, W, C) feature map for "
                f"the attention loss. Received output shape: {tuple(shape)}"
            )
    return list(stage_layers)


def build_feature_model(classifier, stage_layers=None):
    """One model returning ``{"logits": (B, K), "stages": [(B, H, W, C), ...]}``.

    It shares every layer (and weight) with ``classifier``.
    """
    if not isinstance(classifier, keras.Model) or not hasattr(classifier, "inputs") \
            or classifier.inputs is None:
        raise ValueError(
            "The classifier must be a functional keras.Model (built with keras.Input) so "
            f"its stage outputs can be reached. Received: {type(classifier).__name__}"
        )
    check_logits_output(classifier)
    names = resolve_stage_layers(classifier, stage_layers)
    outputs = {
        "logits": classifier.outputs[0],
        "stages": [classifier.get_layer(n).output for n in names],
    }
    return keras.Model(classifier.inputs, outputs, name=f"{classifier.name}_features")

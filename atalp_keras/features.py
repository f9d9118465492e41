"""The multi-output feature model: logits plus the chosen stage outputs, from
one forward pass (what the attention loss needs), and the checks a classifier
passes where it enters the package."""

import keras
import numpy as np
from keras import ops

from atalp_keras.backbones import stage_layer_names
from atalp_keras.errors import UsageError

_PROBE_SIZE = 4
_SUM_TOLERANCE = 1e-4


def check_functional(classifier):
    """Refuses anything but a functional ``keras.Model`` built on ``keras.Input``.

    Stage outputs and the input shape are read from the layer graph, which a
    subclassed model or a ``Sequential`` without ``keras.Input`` does not have.

    Raises:
        UsageError: saying what is required and how to get it.
    """
    if not isinstance(classifier, keras.Model):
        raise UsageError(
            "The classifier must be a keras.Model from [0, 1] images to logits. "
            f"Received: {type(classifier).__name__}")
    try:
        inputs = classifier.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs and len(classifier.outputs or ()) == 1 and classifier.layers:
        return
    kind = "a Sequential model without keras.Input" \
        if isinstance(classifier, keras.Sequential) else \
        f"a subclassed model ({type(classifier).__name__})"
    raise UsageError(
        f"The classifier must be a functional keras.Model built with keras.Input and "
        f"one logits output, so its input shape and stage outputs can be read. Received: "
        f"{kind} {classifier.name!r}. Rebuild it as keras.Model(inputs, outputs) with "
        "inputs = keras.Input(shape=(H, W, C)) (for a Sequential: put keras.Input(shape=...) "
        "first in its layer list); a subclass can be wrapped the same way, "
        "keras.Model(inputs, subclass(inputs)), but then only methods without the "
        "attention term (standard, pat, alp, trades, fast) can run, since its inner "
        "layers are not reachable.")


def probe_batch(input_shape, size=_PROBE_SIZE):
    """A fixed batch of uniform [0, 1] images, ``(size,) + input_shape``."""
    shape = tuple(32 if d is None else int(d) for d in input_shape)
    return np.random.default_rng(0).uniform(size=(size,) + shape).astype("float32")


def check_logits_output(classifier, probe=None):
    """Refuses a classifier that returns probabilities (or log-probabilities).

    Decided by behaviour, whatever the final layer looks like
    (``activation="softmax"``, ``tf.nn.softmax``, a ``keras.ops.softmax`` layer):
    on a probe batch, rows that are non-negative and sum to 1 are probabilities,
    rows whose ``exp`` sums to 1 are log-probabilities. Attacks and the ALP and
    TRADES terms need logits.

    Args:
        classifier: Callable ``classifier(x, training=False) -> (B, K)``.
        probe: Images to try; None uses `probe_batch` of the classifier's
            input shape.

    Raises:
        UsageError: naming the classifier and the fix.
    """
    if probe is None:
        probe = probe_batch(tuple(classifier.inputs[0].shape[1:]))
    out = ops.convert_to_numpy(ops.cast(classifier(probe, training=False), "float32"))
    if out.ndim != 2 or out.shape[-1] < 2:
        return
    sums = np.sum(out, axis=-1)
    probabilities = np.all(out >= 0) and np.allclose(sums, 1.0, atol=_SUM_TOLERANCE)
    log_sums = np.sum(np.exp(np.minimum(out, 0.0)), axis=-1)
    log_probabilities = np.all(out <= 0) and np.allclose(log_sums, 1.0, atol=_SUM_TOLERANCE)
    if probabilities or log_probabilities:
        what = "probabilities (rows non-negative, summing to 1)" if probabilities else \
            "log-probabilities (rows whose exp sums to 1)"
        name = getattr(classifier, "name", type(classifier).__name__)
        raise UsageError(
            f"Classifier {name!r} returns {what} on a probe batch, as after a final "
            "softmax. Attacks and the ALP/TRADES losses need logits: "
            "remove the final softmax (e.g. Dense(K) with no activation) and apply softmax "
            "only when serving.")


def candidate_stage_layers(classifier):
    """The last layer with a 4-D output at each spatial resolution, in order.

    Returns:
        A list of ``(name, (H, W))``: good guesses for ``stage_layers``.
    """
    last = {}
    for layer in classifier.layers[1:]:
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4:
            last[shape[1:3]] = layer.name
    return [(name, size) for size, name in last.items()]


def detect_stage_layers(classifier):
    """ResNet stage ends by name (``conv{2..5}_block{N}_out``).

    Raises:
        UsageError: listing the candidate layers (last 4-D output at each
            spatial resolution) when none is named like a stage end.
    """
    try:
        return stage_layer_names(classifier)
    except ValueError:
        pass
    candidates = candidate_stage_layers(classifier)
    listed = ", ".join(f"{name} ({h}x{w})" for name, (h, w) in candidates) or "none"
    raise UsageError(
        f"Model {classifier.name!r} has no layers named conv{{2..5}}_block{{N}}_out, so the "
        "stages the attention term pairs cannot be found automatically. Name them with "
        "stage_layers=[...] (--stage_layers on the command line). Candidates (the last 4-D "
        f"output at each spatial resolution): {listed}")


def resolve_stage_layers(classifier, stage_layers=None):
    """Returns the stage layer names to pair, checking that each exists.

    Args:
        classifier: A functional ``keras.Model``.
        stage_layers: Names of layers whose outputs are ``(B, H, W, C)`` maps
            (a list, or one comma-separated string), or None to find ResNet
            stage ends (`detect_stage_layers`).

    Raises:
        UsageError: for an unknown name (listing the layer names that exist),
            a layer that is not 4-D, or a failed detection.
    """
    if stage_layers is None:
        return detect_stage_layers(classifier)
    if isinstance(stage_layers, str):
        stage_layers = [s for s in stage_layers.split(",") if s]
    names = [layer.name for layer in classifier.layers]
    unknown = [s for s in stage_layers if s not in names]
    if unknown:
        raise UsageError(
            f"Unknown stage layer name(s) {unknown} for model {classifier.name!r}. "
            f"Layers that exist: {names}"
        )
    for s in stage_layers:
        shape = classifier.get_layer(s).output.shape
        if len(shape) != 4:
            raise UsageError(
                f"Stage layer {s!r} must output a 4-D (batch, H, W, C) feature map for "
                f"the attention loss. Received output shape: {tuple(shape)}"
            )
    return list(stage_layers)


def feature_model_for(classifier, stage_layers):
    """``build_feature_model`` without the checks, for a classifier already checked."""
    outputs = {
        "logits": classifier.outputs[0],
        "stages": [classifier.get_layer(n).output for n in stage_layers],
    }
    # The classifier's own input structure: a single input as a tensor, not
    # a one-element list, which Keras warns about when called with a tensor.
    inputs = classifier.inputs[0] if len(classifier.inputs) == 1 else classifier.inputs
    return keras.Model(inputs, outputs, name=f"{classifier.name}_features")


def build_feature_model(classifier, stage_layers=None):
    """One model returning ``{"logits": (B, K), "stages": [(B, H, W, C), ...]}``.

    It shares every layer (and weight) with ``classifier``.

    Raises:
        UsageError: for a non-functional or probability-output classifier, or
            stage layers that cannot be resolved (`resolve_stage_layers`).
    """
    check_functional(classifier)
    check_logits_output(classifier)
    return feature_model_for(classifier, resolve_stage_layers(classifier, stage_layers))

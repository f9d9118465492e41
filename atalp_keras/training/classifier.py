"""The classifier a run trains: a backbone from the registry by name, or a
user's ``.keras`` file checked against the data."""

import keras

from atalp_keras import backbones, export
from atalp_keras.errors import UsageError
from atalp_keras.model import ATALPModel
from atalp_keras.training.config import model_names

def _backbone_options(config, replicas):
    """The options of ``config.model`` that the run sets, as its registry
    entry declares them (an architecture gets only what it takes)."""
    takes = backbones.backbone_options(config.model)
    options = {}
    if "widths" in takes and config.model in ("tiny", "tiny_deep"):
        options["widths"] = config.tiny_widths
    if "synchronized_bn" in takes:
        # Batch statistics over the global batch under a strategy.
        options["synchronized_bn"] = replicas > 1
    if "weights" in takes:
        options["weights"] = None if config.weights == "none" \
            else config.weights
    return options


def build_classifier(config, info, replicas):
    """``(classifier, stage_layers)``: the logits model and the layers whose
    attention is paired (None = the backbone's stage ends)."""
    stage_layers = list(config.stage_layers) or None
    if config.model not in model_names():
        return _load_classifier(config, info, stage_layers)
    # A failed ImageNet download raises a bare Exception from get_file.
    errors = Exception if config.weights == "imagenet" else (ValueError,
                                                             OSError)
    try:
        classifier = backbones.build_backbone(
            config.model, info.input_shape, info.num_classes,
            **_backbone_options(config, replicas))
    except errors as error:
        first = str(error).strip().splitlines()[0] if str(error) else ""
        raise UsageError(
            f"Cannot build model {config.model!r} for images of shape "
            f"{info.input_shape} ({type(error).__name__}: {first})") from None
    return classifier, stage_layers


def _load_classifier(config, info, stage_layers):
    loaded = export.load_classifier(config.model)
    if isinstance(loaded, ATALPModel):
        stage_layers = stage_layers or list(loaded.stage_layers)
        loaded = loaded.classifier
    if not isinstance(loaded, keras.Model) or not getattr(
            loaded, "inputs", None):
        raise UsageError(
            f"{config.model!r} must hold a functional Keras classifier (built "
            f"with keras.Input). Received: {type(loaded).__name__}")
    model_shape = tuple(loaded.inputs[0].shape[1:])
    if model_shape != tuple(info.input_shape):
        raise UsageError(
            f"The model takes images of shape {model_shape} but the dataset "
            f"has {tuple(info.input_shape)}; pass --image_size or another "
            f"dataset. Received: model={config.model!r}")
    num_classes = int(loaded.outputs[0].shape[-1])
    if num_classes != info.num_classes:
        raise UsageError(
            f"The model has {num_classes} outputs but the dataset has "
            f"{info.num_classes} classes. Received: model={config.model!r}")
    return loaded, stage_layers

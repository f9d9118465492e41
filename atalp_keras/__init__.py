"""atalp-keras: Attention and Adversarial Logit Pairing (AT + ALP) for Keras 3.

Public API only; see README.md for a ten-line example. Names are imported on
first use, so ``import atalp_keras`` does not import TensorFlow (the
command-line tools quiet TensorFlow before it loads).
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module defining it.
_PUBLIC = {
    "FGSMAttack": "atalp_keras.attacks",
    "PGDAttack": "atalp_keras.attacks",
    "TRADESAttack": "atalp_keras.attacks",
    "get_attack": "atalp_keras.attacks",
    "unrolled_steps": "atalp_keras.attacks",
    "attack_folding": "atalp_keras.folding",
    "attention_map": "atalp_keras.attention",
    "attention_pairing_loss": "atalp_keras.attention",
    "application_resnet": "atalp_keras.backbones",
    "build_backbone": "atalp_keras.backbones",
    "cifar_resnet": "atalp_keras.backbones",
    "simple_cnn": "atalp_keras.backbones",
    "stage_layer_names": "atalp_keras.backbones",
    "tiny_resnet": "atalp_keras.backbones",
    "build_feature_model": "atalp_keras.features",
    "alp_loss": "atalp_keras.losses",
    "cross_entropy": "atalp_keras.losses",
    "trades_kl": "atalp_keras.losses",
    "METHODS": "atalp_keras.methods",
    "default_attack": "atalp_keras.methods",
    "get_method": "atalp_keras.methods",
    "ATALPModel": "atalp_keras.model",
    "export_saved_model": "atalp_keras.export",
}
# Modules the eager __init__ used to import, so ``atalp_keras.<module>``
# worked after a bare ``import atalp_keras``.
_SUBMODULES = ("attacks", "attention", "backbones", "features", "losses",
               "methods", "model")

__all__ = sorted(_PUBLIC) + list(_SUBMODULES) + ["load_model"]


def load_model(path, **kwargs):
    """`keras.models.load_model` with this package's classes registered.

    A bare ``import atalp_keras`` registers nothing with Keras (it imports no
    TensorFlow), so a saved `ATALPModel` or a backbone's layers load through
    this function, or after ``import atalp_keras.model``.
    """
    import keras

    importlib.import_module("atalp_keras.model")  # Registers ATALPModel.
    importlib.import_module("atalp_keras.backbones")  # And the backbone layers.
    return keras.models.load_model(path, **kwargs)


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"atalp_keras.{name}")
    else:
        raise AttributeError(f"module 'atalp_keras' has no attribute {name!r}")
    globals()[name] = value  # Later look-ups skip this function.
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))

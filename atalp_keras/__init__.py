"""atalp-keras: Attention and Adversarial Logit Pairing (AT + ALP) for Keras 3.

Public API only; see README.md for a ten-line example.
"""

from atalp_keras import attacks
from atalp_keras.attacks import FGSMAttack, PGDAttack, TRADESAttack, get_attack
from atalp_keras.attention import attention_map, attention_pairing_loss
from atalp_keras.backbones import (application_resnet, build_backbone, cifar_resnet,
                                   simple_cnn, stage_layer_names, tiny_resnet)
from atalp_keras.features import build_feature_model
from atalp_keras.losses import alp_loss, cross_entropy, trades_kl
from atalp_keras.methods import METHODS, default_attack, get_method
from atalp_keras.model import ATALPModel

__version__ = "0.1.0"

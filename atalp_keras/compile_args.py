"""What ``ATALPModel.compile`` makes of its arguments: each loss term's weight
and the training and evaluation attacks, checked."""

import numpy as np

from atalp_keras import methods
from atalp_keras.attacks import deserialize_attack
from atalp_keras.attacks.base import Attack
from atalp_keras.attacks.pgd import PGDAttack
from atalp_keras.errors import UsageError

WEIGHT_ARGS = ("natural_weight", "adv_weight", "alp_weight", "at_weight", "trades_beta",
               "mart_beta")


def resolve_weights(preset, overrides):
    """The preset's weight of each loss term, or its override (each finite, >= 0)."""
    weights = {}
    for name in WEIGHT_ARGS:
        value = overrides[name]
        value = getattr(preset, name) if value is None else value
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise UsageError(f"`{name}` must be a finite number >= 0. Received: {name}={value}")
        weights[name] = value
    return weights


def resolve_attacks(preset, weights, attack, eval_attack):
    """The training and evaluation attacks from compile's arguments."""
    if attack == "auto":
        attack = methods.default_attack(preset)
    if isinstance(attack, dict):
        attack = deserialize_attack(attack)
    if attack is not None and not isinstance(attack, Attack):
        raise UsageError(
            "`attack` must be an atalp_keras Attack (e.g. PGDAttack(eps=8/255, ...)), "
            f"None or 'auto'. Received: attack={attack!r}"
        )
    adversarial = any(weights[k] > 0 for k in ("adv_weight", "alp_weight", "at_weight",
                                               "trades_beta", "mart_beta"))
    if adversarial and attack is None:
        raise UsageError(
            f"Method {preset.name!r} with weights {weights} uses adversarial examples, "
            "so it needs an attack. Received: attack=None"
        )
    if not adversarial:
        attack = None
    if eval_attack == "auto":
        eval_attack = None
        if attack is not None:
            # Step 2.5 * eps / steps (Madry et al.), whatever the training step.
            eval_attack = PGDAttack(attack.eps, num_steps=10, seed=attack.seed)
    if isinstance(eval_attack, dict):
        eval_attack = deserialize_attack(eval_attack)
    if eval_attack is not None and not isinstance(eval_attack, Attack):
        raise UsageError(
            f"`eval_attack` must be an Attack, None or 'auto'. Received: {eval_attack!r}"
        )
    return attack, eval_attack

"""L-inf attacks. Each takes ``(model, x, y)`` and returns ``x_adv`` in the
eps-ball around ``x`` and in [0, 1]; ``get_attack(name, **kwargs)`` builds one by
name (the names ``evaluate.py`` accepts)."""

from atalp_keras.attacks.base import Attack, check_eps, project_linf
from atalp_keras.attacks.pgd import FGSMAttack, PGDAttack, TRADESAttack
from atalp_keras.attacks.apgd import APGDAttack, APGDDLRAttack, APGDTAttack
from atalp_keras.attacks.autoattack import AutoAttack, AutoAttackFast
from atalp_keras.attacks.fab import FABAttack
from atalp_keras.attacks.rays import RaySAttack
from atalp_keras.attacks.square import SquareAttack

ATTACKS = {
    "fgsm": FGSMAttack,
    "pgd": PGDAttack,
    "trades": TRADESAttack,
    "apgd-ce": APGDAttack,
    "apgd-dlr": APGDDLRAttack,
    "apgd-t": APGDTAttack,
    "fab-t": FABAttack,
    "square": SquareAttack,
    "rays": RaySAttack,
    "autoattack": AutoAttack,
    "autoattack-fast": AutoAttackFast,
}


def get_attack(name, **kwargs):
    """Builds the attack registered as ``name`` with its keyword arguments."""
    if name not in ATTACKS:
        raise ValueError(
            f"Unknown attack {name!r}. Expected one of: {', '.join(sorted(ATTACKS))}. "
            f"Received: attack={name!r}"
        )
    return ATTACKS[name](**kwargs)


def serialize_attack(attack):
    """``{"name": ..., "config": ...}`` or None."""
    if attack is None:
        return None
    return {"name": attack.name, "config": attack.get_config()}


def deserialize_attack(config):
    if config is None:
        return None
    return get_attack(config["name"], **config["config"])

"""The training presets of METHOD.md as data: a weight per loss term and the
attack used to make the adversarial twin."""

import dataclasses

from atalp_keras.attacks.pgd import FGSMAttack, PGDAttack, TRADESAttack


@dataclasses.dataclass(frozen=True)
class Method:
    """Weights of ``L = w_nat CE(x) + w_adv CE(x_adv) + alp ALP + at AT (+ beta KL)``."""

    name: str
    natural_weight: float
    adv_weight: float
    alp_weight: float = 0.0
    at_weight: float = 0.0
    trades_beta: float = 0.0
    attack: str = "pgd"  # "none", "pgd", "fgsm_rs" (Wong et al.), "trades"


METHODS = {
    m.name: m
    for m in [
        Method("standard", 1.0, 0.0, attack="none"),
        Method("pat", 0.0, 1.0),
        Method("alp", 0.5, 0.5, alp_weight=0.5),
        Method("at", 0.5, 0.5, at_weight=1.0),
        Method("at_alp", 0.5, 0.5, alp_weight=0.5, at_weight=1.0),
        Method("trades", 1.0, 0.0, trades_beta=6.0, attack="trades"),
        Method("fast", 0.0, 1.0, attack="fgsm_rs"),
    ]
}


def get_method(name):
    """Returns the preset called ``name``; unknown names list the known ones."""
    if name not in METHODS:
        raise ValueError(
            f"Unknown method {name!r}. Expected one of: {', '.join(METHODS)}. "
            f"Received: method={name!r}"
        )
    return METHODS[name]


def default_attack(method, eps=8 / 255, step_size=2 / 255, num_steps=7, seed=None):
    """The training attack of a preset (None for ``standard``).

    ``trades`` uses 10 steps unless ``num_steps`` is given differently by the
    caller; ``fast`` takes one step of ``1.25 * eps`` from a random start.
    """
    method = get_method(method) if isinstance(method, str) else method
    if method.attack == "none":
        return None
    if method.attack == "pgd":
        return PGDAttack(eps, step_size=step_size, num_steps=num_steps, seed=seed)
    if method.attack == "trades":
        return TRADESAttack(eps, step_size=step_size, num_steps=num_steps, seed=seed)
    if method.attack == "fgsm_rs":
        return FGSMAttack(eps, step_size=min(1.25 * eps, 1.0), random_start=True, seed=seed)
    raise ValueError(f"Unknown attack kind {method.attack!r} in method {method.name!r}")

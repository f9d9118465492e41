"""The training presets of METHOD.md as data: a weight per loss term and the
attack used to make the adversarial twin, with its default number of steps.

This module owns every preset default: `default_attack` (and so
``ATALPModel.compile(attack="auto")``), the training configuration and the
command line all read them from here. It imports no TensorFlow until an
attack is built.
"""

import dataclasses

from atalp_keras.errors import UsageError

# The training attack's step is a quarter of its radius unless set (the
# paper's 2/255 for eps 8/255); the single-step ``fast`` preset takes 1.25 eps.
STEP_SIZE_FRACTION = 0.25
FAST_STEP_FACTOR = 1.25
# Steps of the PGD attack that measures adversarial accuracy during training.
EVAL_PGD_STEPS = 10
# How a method that scores both the clean batch and its adversarial twin runs
# them in training (ATALPModel.compile(pair_pass=...)): one forward pass of
# both (METHOD.md), or one pass each (the TRADES and MART reference code).
PAIR_PASSES = ("joint", "separate")


@dataclasses.dataclass(frozen=True)
class Method:
    """Weights of ``L = w_nat CE(x) + w_adv CE(x_adv) + alp ALP + at AT (+ beta KL)``
    (+ MART's ``BCE(x_adv) + mart_beta KL(x || x_adv) (1 - p_y(x))``)."""

    name: str
    natural_weight: float
    adv_weight: float
    alp_weight: float = 0.0
    at_weight: float = 0.0
    trades_beta: float = 0.0
    mart_beta: float = 0.0  # > 0: MART's boosted CE and weighted KL (Wang et al. 2020).
    attack: str = "pgd"  # "none", "pgd", "fgsm_rs" (Wong et al.), "trades"
    num_steps: int = 7  # Steps of the training attack.


METHODS = {
    m.name: m
    for m in [
        Method("standard", 1.0, 0.0, attack="none"),
        Method("pat", 0.0, 1.0),
        Method("alp", 0.5, 0.5, alp_weight=0.5),
        Method("at", 0.5, 0.5, at_weight=1.0),
        Method("at_alp", 0.5, 0.5, alp_weight=0.5, at_weight=1.0),
        Method("trades", 1.0, 0.0, trades_beta=6.0, attack="trades",
               num_steps=10),
        Method("fast", 0.0, 1.0, attack="fgsm_rs"),  # num_steps unused
        # MART (Wang et al., ICLR 2020; beta 6 and a 10-step attack as in
        # YisenWang/MART): trains on its own adversarial loss, so both CE
        # weights are 0.
        Method("mart", 0.0, 0.0, mart_beta=6.0, num_steps=10),
    ]
}


def get_method(name):
    """Returns the preset called ``name``; unknown names list the known ones.

    Raises:
        UsageError: For a name that is not a preset.
    """
    if name not in METHODS:
        raise UsageError(
            f"Unknown method {name!r}. Expected one of: {', '.join(METHODS)}. "
            f"Received: method={name!r}"
        )
    return METHODS[name]


def default_step_size(eps):
    """The training attack's default step for radius ``eps``."""
    return eps * STEP_SIZE_FRACTION


def default_attack(method, eps=8 / 255, step_size=None, num_steps=None, seed=None):
    """The training attack of a preset (None for ``standard``).

    Args:
        method: A preset name or `Method`.
        eps: L-inf radius on the [0, 1] pixel scale.
        step_size: Step of each iteration; None = ``eps / 4``.
        num_steps: Iterations; None = the preset's (7; ``trades``, ``mart`` 10).
            ``fast`` always takes one step of ``1.25 * eps`` from a random
            start (Wong et al.).
        seed: Seed of the random start.
    """
    from atalp_keras.attacks import FGSMAttack, PGDAttack, TRADESAttack

    method = get_method(method) if isinstance(method, str) else method
    if method.attack == "none":
        return None
    if method.attack == "fgsm_rs":
        return FGSMAttack(eps, step_size=min(FAST_STEP_FACTOR * eps, 1.0),
                          random_start=True, seed=seed)
    step_size = default_step_size(eps) if step_size is None else step_size
    num_steps = method.num_steps if num_steps is None else num_steps
    if method.attack == "pgd":
        return PGDAttack(eps, step_size=step_size, num_steps=num_steps, seed=seed)
    if method.attack == "trades":
        return TRADESAttack(eps, step_size=step_size, num_steps=num_steps, seed=seed)
    raise ValueError(f"Unknown attack kind {method.attack!r} in method {method.name!r}")

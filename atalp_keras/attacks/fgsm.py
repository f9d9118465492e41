"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps, and the
"fast" adversarial-training attack of Wong et al. (2020) with a random start."""

from atalp_keras.attacks.pgd import PGDAttack
from atalp_keras.errors import UsageError


class FGSMAttack(PGDAttack):
    """Fast gradient sign method: one step of size ``eps`` (no random start).

    With ``random_start=True`` and ``step_size=1.25 * eps`` it is the "fast"
    adversarial training attack of Wong et al. (2020).
    """

    name = "fgsm"
    suite_fixed = ("num_steps", "step_size", "restarts")  # one step of size eps

    def __init__(self, eps, step_size=None, random_start=False, restarts=1,
                 targeted=False, seed=None, num_steps=1):
        if num_steps != 1:
            raise UsageError(f"FGSM takes exactly one step. Received: num_steps={num_steps}")
        super().__init__(
            eps,
            step_size=eps if step_size is None else step_size,
            num_steps=1,
            random_start=random_start,
            restarts=restarts,
            targeted=targeted,
            seed=seed,
        )

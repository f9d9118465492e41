"""The TRADES inner maximisation (Zhang et al. 2019): PGD on the KL divergence
from the clean prediction, started at ``x + 0.001 * N(0, 1)``."""

import keras
from keras import ops

from atalp_keras import backend, losses
from atalp_keras.attacks.base import model_logits
from atalp_keras.attacks.pgd import PGDAttack
from atalp_keras.errors import UsageError


class TRADESAttack(PGDAttack):
    """The TRADES inner maximisation (Zhang et al. 2019).

    Starts at ``x + 0.001 * N(0, 1)`` and ascends
    ``KL(softmax(f(x)) || softmax(f(x_adv)))``; labels are not used.
    """

    name = "trades"

    def __init__(self, eps, step_size=None, num_steps=10, restarts=1, seed=None,
                 random_start=True, targeted=False):
        if targeted:
            raise UsageError("The TRADES attack has no targeted mode. Received: targeted=True")
        super().__init__(eps, step_size=step_size, num_steps=num_steps,
                         random_start=random_start, restarts=restarts, seed=seed)

    def _start(self, x):
        if not self.random_start:
            return x
        noise = 0.001 * keras.random.normal(ops.shape(x), seed=self.seed_for(x))
        return ops.clip(x + noise, 0.0, 1.0)

    def _context(self, model, x, y):
        return backend.stop_gradient(model_logits(model, x))

    def _objective(self, logits, context):
        return losses.trades_kl(context, logits)

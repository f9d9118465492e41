"""L-inf PGD (Madry et al. 2018): the projected sign-gradient loop that FGSM
(``fgsm.py``) and the TRADES KL attack (``trades.py``) reuse.

    x_0     = clip(x + U(-eps, eps), 0, 1)                 (random start)
    x_{t+1} = clip(x + clip(x_t + a * sign(g_t) - x, -eps, eps), 0, 1)

``g_t`` is the input gradient of the attack objective: cross-entropy for PGD and
FGSM (minus cross-entropy to the target when ``targeted``), the KL divergence
from the clean prediction for TRADES. The model is always called with
``training=False``.
"""

import keras
from keras import ops

from atalp_keras import backend, losses
from atalp_keras.attacks.base import (Attack, check_eps, check_positive_int, model_logits,
                                      per_example, project_linf)
from atalp_keras.attacks.primitives import unrolling_steps

# Inside `primitives.unrolled_steps(True)` (train_step, test_step, XLA-compiled
# perturb), attacks of at most this many steps (given as a Python int) are
# unrolled in the graph; longer ones, tensor step counts and other attacks run as
# one loop (`atalp_keras.backend.while_loop`).
UNROLL_MAX_STEPS = 20


class PGDAttack(Attack):
    """Projected gradient descent in the L-inf ball, with restarts.

    Args:
        eps: L-inf radius on the [0, 1] pixel scale (8/255 = 0.0314).
        step_size: Step per iteration, same scale.
        num_steps: Number of iterations.
        random_start: Start from a uniform point in the ball (Madry et al.).
        restarts: Independent runs; per example the worst case is kept
            (a misclassified point first, then the highest loss).
        targeted: If True, ``y`` holds target labels and the attack descends
            the cross-entropy to them.
        seed: Optional int for the attack's ``keras.random.SeedGenerator``.

    Example:
        >>> attack = PGDAttack(eps=8 / 255, step_size=2 / 255, num_steps=20)
        >>> x_adv = attack.perturb(model, x_test, y_test)
    """

    name = "pgd"
    in_graph = True

    def __init__(self, eps, step_size=None, num_steps=10, random_start=True,
                 restarts=1, targeted=False, seed=None):
        super().__init__(eps, seed=seed)
        self.num_steps = check_positive_int(num_steps, "num_steps")
        if step_size is None:
            step_size = 2.5 * self.eps / self.num_steps
        self.step_size = check_eps(step_size, "step_size")
        self.random_start = bool(random_start)
        self.restarts = check_positive_int(restarts, "restarts")
        self.targeted = bool(targeted)

    def get_config(self):
        return {
            **super().get_config(),
            "step_size": self.step_size,
            "num_steps": self.num_steps,
            "random_start": self.random_start,
            "restarts": self.restarts,
            "targeted": self.targeted,
        }

    # The three pieces of an L-inf step (start, objective, step).
    def _start(self, x):
        if not self.random_start:
            return x
        noise = keras.random.uniform(
            ops.shape(x), -self.eps, self.eps, seed=self.seed_for(x)
        )
        return ops.clip(x + noise, 0.0, 1.0)

    def _context(self, model, x, y):
        """Whatever the objective needs besides the current logits."""
        return ops.cast(y, "int32")

    def _objective(self, logits, context):
        """Per-example value the attack ascends."""
        ce = losses.cross_entropy(context, logits)
        return -ce if self.targeted else ce

    def iterate(self, model, x_natural, x_adv, context, num_steps):
        """``num_steps`` projected sign-gradient steps from ``x_adv``.

        Resumable (PGD-k then ``iterate`` m more steps is PGD-(k+m) from the same
        start), and ``num_steps`` may be a tensor. ``context`` is what the
        objective needs: the int labels for PGD/FGSM, clean logits for TRADES.
        """
        eps = ops.cast(self.eps, x_natural.dtype)
        step = ops.cast(self.step_size, x_natural.dtype)

        def objective(x_adv):
            return ops.sum(self._objective(model_logits(model, x_adv), context)), None

        def body(i, x_adv):
            grad = backend.value_and_grad(objective, x_adv)[2]
            x_adv = x_adv + step * ops.sign(grad)
            return i + 1, project_linf(x_adv, x_natural, eps)

        if unrolling_steps() and isinstance(num_steps, int) and num_steps <= UNROLL_MAX_STEPS:
            # Unrolled: under XLA on CPU a while_loop of these steps cost 3x
            # the unrolled steps (docs/benchmarks.md).
            for i in range(num_steps):
                _, x_adv = body(i, x_adv)
            return backend.stop_gradient(x_adv)
        _, x_adv = backend.while_loop(
            lambda i, _: i < num_steps,
            body,
            (ops.convert_to_tensor(0, "int32"), x_adv),
        )
        return backend.stop_gradient(x_adv)

    def _run_once(self, model, x, context):
        return self.iterate(model, x, self._start(x), context, self.num_steps)

    def __call__(self, model, x, y):
        x = ops.convert_to_tensor(x, "float32")
        context = self._context(model, x, y)
        x_best = self._run_once(model, x, context)
        if self.restarts == 1:
            return x_best
        best_score = self._score(model, x_best, y)
        for _ in range(self.restarts - 1):
            candidate = self._run_once(model, x, context)
            score = self._score(model, candidate, y)
            better = score > best_score
            x_best = ops.where(per_example(better, x), candidate, x_best)
            best_score = ops.maximum(score, best_score)
        return x_best

    def _score(self, model, x_adv, y):
        """How bad ``x_adv`` is for the defender: a success beats any loss."""
        logits = model_logits(model, x_adv)
        y = ops.cast(y, "int32")
        loss = losses.cross_entropy(y, logits)
        pred = ops.cast(ops.argmax(logits, axis=-1), "int32")
        if self.targeted:
            success, loss = ops.equal(pred, y), -loss
        else:
            success = ops.not_equal(pred, y)
        return ops.where(success, ops.full_like(loss, 1e30), loss)


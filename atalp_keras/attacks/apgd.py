"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness
with an ensemble of diverse parameter-free attacks", ICML): APGD-CE, APGD-DLR
and the targeted APGD-T, in the L-inf ball.

The step rule (Algorithm 1 of the paper), per example:

    x_1     = P(x_0 + eta * sign(grad f(x_0)))                    eta_0 = 2 * eps
    z_{k+1} = P(x_k + eta_k * sign(grad f(x_k)))
    x_{k+1} = P(x_k + alpha * (z_{k+1} - x_k) + (1 - alpha) * (x_k - x_{k-1}))   alpha = 0.75

``P`` projects onto the eps-ball intersected with [0, 1]. At the checkpoints
``w_j = ceil(p_j * num_steps)``, ``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, the step is halved and the
iterate moved back to the best point so far when either

    1. the loss went up in fewer than ``rho = 0.75`` of the steps since w_{j-1}, or
    2. the step was not halved at w_{j-1} and the best loss has not improved since.

Losses (maximised): cross-entropy, the Difference of Logits Ratio

    DLR(z, y)      = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)
    DLR-T(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)

with ``z_pi1 >= z_pi2 >= ...`` the sorted logits. DLR needs 3 classes and
DLR-T 4; with fewer classes both fall back to cross-entropy (to the target for
DLR-T) and warn, because the ratio is undefined there.

Choices the paper leaves open, made here: the start is uniform in the ball; the
checkpoints are the exact ``ceil(p_j * N)`` (the reference code uses an integer
approximation of the same schedule); when the iterate is moved back to the best
point its momentum is reset; a run stops early once every example of the batch
is misclassified. Each example's randomness is keyed by (seed, example index,
round) rather than drawn for the batch as a whole (``keys.py``), so an example's
result does not depend on the batch size or on which other points are attacked
with it (this is what makes AutoAttack's per-example guarantees exact). The
rounds (restarts, target classes) are driven by ``rounds.RoundAttack``.
"""

import math
import warnings

import numpy as np
from keras import ops

from atalp_keras import backend, losses
from atalp_keras.attacks.base import (check_fraction, check_positive_int, model_logits,
                                      per_example, project_linf)
from atalp_keras.attacks.keys import keyed_uniform
from atalp_keras.attacks.rounds import RoundAttack, top_other_classes  # noqa: F401
from atalp_keras.errors import UsageError

# ---------------------------------------------------------------------------
# Losses.


def dlr_loss(labels, logits):
    """Untargeted Difference of Logits Ratio per example (to be maximised).

    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)``; needs >= 3 classes.
    """
    logits = ops.cast(logits, "float32")
    labels = ops.cast(labels, "int32")
    num_classes = logits.shape[-1]
    if num_classes is not None and num_classes < 3:
        raise UsageError(f"DLR needs at least 3 classes. Received: {num_classes} classes")
    top = ops.top_k(logits, 3)[0]
    onehot = ops.one_hot(labels, ops.shape(logits)[-1], dtype="bool")
    z_y = ops.sum(ops.where(onehot, logits, 0.0), axis=-1)
    z_other = ops.max(ops.where(onehot, -np.inf, logits), axis=-1)
    return -(z_y - z_other) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted_loss(labels, target_labels, logits):
    """Targeted DLR per example (to be maximised); needs >= 4 classes.

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``.
    """
    logits = ops.cast(logits, "float32")
    num_classes = logits.shape[-1]
    if num_classes is not None and num_classes < 4:
        raise UsageError(f"DLR-T needs at least 4 classes. Received: {num_classes} classes")
    top = ops.top_k(logits, 4)[0]
    z_y = ops.take_along_axis(logits, ops.cast(labels, "int32")[:, None], axis=-1)[:, 0]
    z_t = ops.take_along_axis(logits, ops.cast(target_labels, "int32")[:, None], axis=-1)[:, 0]
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def apgd_checkpoints(num_steps):
    """The iterations ``w_j = ceil(p_j * num_steps)``, j >= 1, at which APGD
    may halve its step (duplicates for small ``num_steps`` removed)."""
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1.0:
            break
        p.append(nxt)
    # The tolerance keeps float noise (0.41 * 100 = 41.000000000000004) from
    # moving a checkpoint one step later.
    checkpoints = sorted({math.ceil(pj * num_steps - 1e-9) for pj in p[1:]})
    return [w for w in checkpoints if 1 <= w <= num_steps]


def _checkpoint_tables(num_steps):
    """Per iteration ``t``: whether ``t`` is a checkpoint, and the length of
    the period that ends there (as constant tensors indexed by ``t``)."""
    is_check = np.zeros(num_steps + 1, bool)
    period = np.zeros(num_steps + 1, np.float32)
    previous = 0
    for w in apgd_checkpoints(num_steps):
        is_check[w] = True
        period[w] = w - previous
        previous = w
    return ops.convert_to_tensor(is_check), ops.convert_to_tensor(period)


class APGDAttack(RoundAttack):
    """Auto-PGD, untargeted, with cross-entropy or DLR loss (Croce & Hein 2020).

    Args:
        eps: L-inf radius on the [0, 1] pixel scale (8/255 = 0.0314).
        num_steps: Iterations per run (the paper's N_iter; 100 in AutoAttack).
        restarts: Runs from independent random starts; on arrays only the
            points not yet broken run again.
        loss: ``"ce"`` (APGD-CE) or ``"dlr"`` (APGD-DLR).
        rho: Fraction of loss increases below which the step is halved.
        momentum: Weight ``alpha`` of the new step against the previous one.
        seed: Optional int; same seed, same adversarial examples.

    Example:
        >>> attack = APGDAttack(eps=8 / 255, num_steps=100)
        >>> x_adv = attack.perturb(model, x_test, y_test)
    """

    name = "apgd-ce"
    _losses = ("ce", "dlr")

    def __init__(self, eps, num_steps=100, restarts=1, loss="ce", rho=0.75, momentum=0.75,
                 seed=None):
        super().__init__(eps, restarts=restarts, seed=seed)
        self.num_steps = check_positive_int(num_steps, "num_steps")
        if loss not in self._losses:
            raise UsageError(f"`loss` must be one of {self._losses}. Received: loss={loss!r}")
        self.loss = loss
        self.rho = check_fraction(rho, "rho")
        self.momentum = check_fraction(momentum, "momentum")
        self.name = f"apgd-{loss}"

    def get_config(self):
        return {
            **super().get_config(),
            "num_steps": self.num_steps,
            "restarts": self.restarts,
            "loss": self.loss,
            "rho": self.rho,
            "momentum": self.momentum,
        }

    def _objective(self, logits, y, targets):
        """Per-example loss the attack ascends."""
        num_classes = logits.shape[-1]
        if self.loss == "dlr":
            if num_classes < 3:
                warnings.warn(f"APGD-DLR: DLR needs >= 3 classes, the model has {num_classes};"
                              " using cross-entropy instead.", stacklevel=2)
                return losses.cross_entropy(y, logits)
            return dlr_loss(y, logits)
        return losses.cross_entropy(y, logits)

    def _evaluate(self, model, x_cur, y, targets):
        """Loss, its input gradient and the misclassified mask at ``x_cur``."""
        def objective(x_cur):
            logits = model_logits(model, x_cur)
            loss = self._objective(logits, y, targets)
            return ops.sum(loss), (loss, logits)

        _, (loss, logits), grad = backend.value_and_grad(objective, x_cur)
        wrong = ops.not_equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), y)
        return backend.stop_gradient(loss), backend.stop_gradient(grad), wrong

    def _initial_state(self, model, x, y, targets, keys):
        noise = 2.0 * keyed_uniform(keys, x.shape[1:]) - 1.0
        x0 = project_linf(x + self.eps * noise, x, self.eps)
        loss0, grad0, wrong0 = self._evaluate(model, x0, y, targets)
        batch = ops.shape(x)[0]
        return dict(
            k=ops.convert_to_tensor(0, "int32"),
            x_cur=x0, x_prev=x0, grad=grad0, loss_cur=loss0,
            x_max=x0, grad_max=grad0, loss_max=loss0,
            step=ops.full((batch,), 2.0 * self.eps, "float32"),
            n_up=ops.zeros((batch,), "float32"),
            loss_max_at_check=loss0,
            reduced_at_check=ops.zeros((batch,), "bool"),
            x_found=x0, found=wrong0,
        )

    def _step(self, s, model, x, y, targets, tables):
        """One APGD iteration on the state ``s`` (Algorithm 1 of the paper)."""
        eps, (is_check, period) = self.eps, tables
        k, x_cur = s["k"], s["x_cur"]
        alpha = ops.where(k == 0, 1.0, self.momentum)
        z = project_linf(x_cur + per_example(s["step"], x) * ops.sign(s["grad"]), x, eps)
        x_new = project_linf(
            x_cur + alpha * (z - x_cur) + (1.0 - alpha) * (x_cur - s["x_prev"]), x, eps)
        loss_new, grad_new, wrong = self._evaluate(model, x_new, y, targets)

        # The first misclassified iterate (kept fixed afterwards, so the
        # output does not depend on when the batch stops).
        keep = ops.logical_and(wrong, ops.logical_not(s["found"]))
        x_found = ops.where(per_example(keep, x), x_new, s["x_found"])
        n_up = s["n_up"] + ops.cast(loss_new > s["loss_cur"], "float32")
        improved = loss_new > s["loss_max"]
        x_max = ops.where(per_example(improved, x), x_new, s["x_max"])
        grad_max = ops.where(per_example(improved, x), grad_new, s["grad_max"])
        loss_max = ops.where(improved, loss_new, s["loss_max"])

        # Checkpoint w_j = k + 1: the two conditions of the paper.
        t = k + 1
        check = is_check[t]
        condition1 = n_up < self.rho * period[t]
        condition2 = ops.logical_and(ops.logical_not(s["reduced_at_check"]),
                                     loss_max <= s["loss_max_at_check"])
        reduce = ops.logical_and(check, ops.logical_or(condition1, condition2))
        reduce_x = per_example(reduce, x)
        return dict(
            k=t,
            x_cur=ops.where(reduce_x, x_max, x_new),
            x_prev=ops.where(reduce_x, x_max, x_cur),
            grad=ops.where(reduce_x, grad_max, grad_new),
            loss_cur=ops.where(reduce, loss_max, loss_new),
            x_max=x_max, grad_max=grad_max, loss_max=loss_max,
            step=ops.where(reduce, 0.5 * s["step"], s["step"]),
            n_up=ops.where(check, ops.zeros_like(n_up), n_up),
            loss_max_at_check=ops.where(check, loss_max, s["loss_max_at_check"]),
            reduced_at_check=ops.where(check, reduce, s["reduced_at_check"]),
            x_found=x_found, found=ops.logical_or(s["found"], wrong),
        )

    def _round(self, model, x, y, targets, keys, restart):
        tables = _checkpoint_tables(self.num_steps)
        state = self._initial_state(model, x, y, targets, keys)

        def cond(s):
            return ops.logical_and(s["k"] < self.num_steps, ops.logical_not(ops.all(s["found"])))

        s = backend.while_loop(cond, lambda st: (self._step(st, model, x, y, targets, tables),),
                               (state,))[0]
        x_out = ops.where(per_example(s["found"], x), s["x_found"], s["x_max"])
        return backend.stop_gradient(project_linf(x_out, x, self.eps)), s["found"]


class APGDDLRAttack(APGDAttack):
    """APGD with the untargeted DLR loss (registry name ``"apgd-dlr"``)."""

    name = "apgd-dlr"

    def __init__(self, eps, num_steps=100, restarts=1, loss="dlr", rho=0.75, momentum=0.75,
                 seed=None):
        super().__init__(eps, num_steps=num_steps, restarts=restarts, loss=loss, rho=rho,
                         momentum=momentum, seed=seed)


class APGDTAttack(APGDAttack):
    """Targeted APGD with the DLR-T loss (APGD-T of AutoAttack).

    For each of the ``n_target_classes`` highest-scoring wrong classes at the
    clean point (at most K - 1), in that order, runs ``restarts`` APGD runs
    that ascend DLR-T towards that class. Success is untargeted: any
    misclassification counts. With fewer than 4 classes DLR-T is undefined and
    the targeted cross-entropy ``-CE(f(x), t)`` is used instead (with a warning).

    Args:
        eps: L-inf radius on the [0, 1] pixel scale.
        num_steps: Iterations per run.
        restarts: Runs per target class.
        n_target_classes: Target classes tried (9 in AutoAttack).
        rho, momentum, seed: As in ``APGDAttack``.
    """

    name = "apgd-t"
    targeted_rounds = True

    def __init__(self, eps, num_steps=100, restarts=1, n_target_classes=9, rho=0.75,
                 momentum=0.75, seed=None):
        super().__init__(eps, num_steps=num_steps, restarts=restarts, loss="ce", rho=rho,
                         momentum=momentum, seed=seed)
        self.n_target_classes = check_positive_int(n_target_classes, "n_target_classes")
        self.loss = "dlr-t"
        self.name = "apgd-t"

    def get_config(self):
        config = super().get_config()
        config.pop("loss")
        config["n_target_classes"] = self.n_target_classes
        return config

    def _objective(self, logits, y, targets):
        num_classes = logits.shape[-1]
        if num_classes < 4:
            warnings.warn(f"APGD-T: DLR-T needs >= 4 classes, the model has {num_classes};"
                          " using the targeted cross-entropy -CE(f(x), target) instead.",
                          stacklevel=2)
            return -losses.cross_entropy(targets, logits)
        return dlr_targeted_loss(y, targets, logits)

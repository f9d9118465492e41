"""FAB-T: the targeted Fast Adaptive Boundary attack in L-inf (Croce & Hein
2020, "Minimally distorted adversarial examples with a fast adaptive boundary
attack", ICML; targeted version from their AutoAttack paper).

FAB looks for the smallest perturbation that changes the class. For the target
``t`` of the current round, with ``g(x) = f_t(x) - f_y(x)`` linearised at the
iterate ``x_i`` (``w = grad g(x_i)``), one step is

    d_i      = proj(x_i,      {z : g(x_i) + <w, z - x_i> = 0} and [0, 1]^D)
    d_orig   = proj(x_orig,   the same hyperplane and box)
    a        = min(|d_i|_inf / (|d_i|_inf + |d_orig|_inf), alpha_max)
    x_{i+1}  = clip((1 - a) (x_i + eta d_i) + a (x_orig + eta d_orig), 0, 1)

where ``proj`` is the minimal-L-inf-norm move onto the hyperplane inside the
box (solved exactly per example by sorting, see ``project_linf_hyperplane``).
When ``x_{i+1}`` is misclassified it is recorded if it is the closest so far and
the iterate is pulled back towards the original point:
``x_{i+1} = (1 - beta) x_orig + beta x_{i+1}``. Defaults for L-inf are the
paper's: ``alpha_max = 0.1``, ``eta = 1.05``, ``beta = 0.9``.

For robust accuracy at ``eps`` (AutoAttack's use), a point counts as broken only
if the closest adversarial found is within ``eps``; other points are returned
unchanged. The first restart starts at the original point, later ones at a
uniform point of L-inf norm ``eps / 2`` (the reference uses
``min(best norm, eps) / 2``, which is ``eps / 2`` for every point a round
still attacks). A run stops early once every point of the batch is broken
within ``eps``; the reference's final refinement search is not implemented
(it only shrinks norms that are already adversarial).
"""

from keras import ops

from atalp_keras import backend
from atalp_keras.attacks.base import (check_fraction, check_positive_int, model_logits,
                                      per_example, project_linf)
from atalp_keras.attacks.keys import keyed_uniform
from atalp_keras.attacks.rounds import RoundAttack


def project_linf_hyperplane(x, w, g):
    """Minimal L-inf move onto a hyperplane inside the [0, 1] box, per row.

    Solves ``min |d|_inf  s.t.  g + <w, d> = 0,  0 <= x + d <= 1`` for each row
    of ``x``, ``w`` (shape ``(B, D)``) and ``g`` (``(B,)``). With ``r = -g``
    each coordinate moves in direction ``s_i = sign(w_i r)`` by
    ``min(tau, room_i)`` (``room_i`` is the distance to the box in that
    direction); ``h(tau) = sum_i |w_i| min(tau, room_i)`` is piecewise linear
    and increasing, so the smallest ``tau`` with ``h(tau) = |r|`` is found
    between two sorted ``room`` values. If even the whole box cannot reach the
    hyperplane, the move goes as far as the box allows.
    """
    r = -g
    s = ops.sign(w) * ops.sign(r)[:, None]
    room = ops.where(s > 0, 1.0 - x, ops.where(s < 0, x, 0.0))
    a = ops.abs(w) * ops.cast(s != 0, w.dtype)
    need = ops.abs(r)
    order = ops.argsort(room, axis=1)
    room_sorted = ops.take_along_axis(room, order, axis=1)
    a_sorted = ops.take_along_axis(a, order, axis=1)
    cum_a = ops.cumsum(a_sorted, axis=1)
    cum_ar = ops.cumsum(a_sorted * room_sorted, axis=1)
    total_a = cum_a[:, -1:]
    reach = cum_ar + room_sorted * (total_a - cum_a)      # h at each breakpoint
    feasible = reach[:, -1] >= need
    first = ops.argmax(ops.cast(reach >= need[:, None], "int32"), axis=1)
    prev = ops.maximum(first - 1, 0)[:, None]
    has_prev = (first > 0)
    prev_ar = ops.where(has_prev, ops.take_along_axis(cum_ar, prev, axis=1)[:, 0], 0.0)
    prev_a = ops.where(has_prev, ops.take_along_axis(cum_a, prev, axis=1)[:, 0], 0.0)
    tau = (need - prev_ar) / ops.maximum(total_a[:, 0] - prev_a, 1e-12)
    tau = ops.where(feasible, tau, room_sorted[:, -1])
    return s * ops.minimum(tau[:, None], room)


class FABAttack(RoundAttack):
    """Targeted FAB in L-inf (FAB-T of AutoAttack).

    Args:
        eps: L-inf radius on the [0, 1] pixel scale; a point is broken only
            by an adversarial example within ``eps``.
        num_steps: Iterations per run (100 in AutoAttack).
        n_target_classes: Highest-scoring wrong classes tried, in order
            (9 in AutoAttack; at most K - 1).
        restarts: Runs per target class.
        alpha_max: Largest weight of the step from the original point.
        eta: Overshoot of the projection steps.
        beta: Backward step towards the original point after a success.
        seed: Optional int.
    """

    name = "fab-t"
    targeted_rounds = True

    def __init__(self, eps, num_steps=100, n_target_classes=9, restarts=1, alpha_max=0.1,
                 eta=1.05, beta=0.9, seed=None):
        super().__init__(eps, restarts=restarts, n_target_classes=n_target_classes, seed=seed)
        self.num_steps = check_positive_int(num_steps, "num_steps")
        self.alpha_max = check_fraction(alpha_max, "alpha_max", include_low=True)
        self.eta = check_fraction(eta, "eta", 1.0, 2.0, include_low=True)
        self.beta = check_fraction(beta, "beta", include_low=True)

    def get_config(self):
        return {
            **super().get_config(),
            "num_steps": self.num_steps,
            "n_target_classes": self.n_target_classes,
            "restarts": self.restarts,
            "alpha_max": self.alpha_max,
            "eta": self.eta,
            "beta": self.beta,
        }

    def _round(self, model, x, y, targets, keys, restart):
        eps = self.eps
        batch = ops.shape(x)[0]
        x_flat = ops.reshape(x, (batch, -1))
        pick = lambda logits, labels: ops.take_along_axis(  # noqa: E731
            logits, labels[:, None], axis=-1)[:, 0]

        def objective(x_cur):
            logits = model_logits(model, x_cur)
            margin = pick(logits, targets) - pick(logits, y)
            return ops.sum(margin), margin

        def margin_and_grad(x_cur):
            _, margin, grad = backend.value_and_grad(objective, x_cur)
            return (backend.stop_gradient(margin),
                    ops.reshape(backend.stop_gradient(grad), (batch, -1)))

        noise = 2.0 * keyed_uniform(keys, x.shape[1:]) - 1.0
        scale = ops.max(ops.abs(ops.reshape(noise, (batch, -1))), axis=1)
        noise = noise / per_example(ops.maximum(scale, 1e-12), x)
        x_start = ops.where(restart > 0, ops.clip(x + 0.5 * eps * noise, 0.0, 1.0), x)

        def cond(i, x_cur, best, best_norm):
            return ops.logical_and(i < self.num_steps, ops.logical_not(ops.all(best_norm <= eps)))

        def body(i, x_cur, best, best_norm):
            margin, w = margin_and_grad(x_cur)
            cur_flat = ops.reshape(x_cur, (batch, -1))
            d_cur = project_linf_hyperplane(cur_flat, w, margin)
            margin_orig = margin + ops.sum(w * (x_flat - cur_flat), axis=1)
            d_orig = project_linf_hyperplane(x_flat, w, margin_orig)
            n_cur = ops.max(ops.abs(d_cur), axis=1)
            n_orig = ops.max(ops.abs(d_orig), axis=1)
            alpha = ops.clip(n_cur / ops.maximum(n_cur + n_orig, 1e-12), 0.0, self.alpha_max)
            alpha = alpha[:, None]
            x_new = ops.clip((1.0 - alpha) * (cur_flat + self.eta * d_cur)
                             + alpha * (x_flat + self.eta * d_orig), 0.0, 1.0)
            x_new = ops.reshape(x_new, ops.shape(x))
            pred = ops.cast(ops.argmax(model_logits(model, x_new), axis=-1), "int32")
            wrong = ops.not_equal(pred, y)
            norm = ops.max(ops.abs(ops.reshape(x_new - x, (batch, -1))), axis=1)
            # Points already broken within eps are frozen, so a point's result
            # does not depend on when its batch stops.
            done = best_norm <= eps
            better = ops.logical_and(ops.logical_and(wrong, norm < best_norm),
                                     ops.logical_not(done))
            best = ops.where(per_example(better, x), x_new, best)
            best_norm = ops.where(better, norm, best_norm)
            pulled = (1.0 - self.beta) * x + self.beta * x_new
            x_next = ops.where(per_example(wrong, x), pulled, x_new)
            return i + 1, x_next, best, best_norm

        inf = ops.full((batch,), float("inf"), "float32")
        _, _, best, best_norm = backend.while_loop(
            cond, body, (ops.convert_to_tensor(0, "int32"), x_start, x, inf))
        success = best_norm <= eps
        x_adv = ops.where(per_example(success, x), project_linf(best, x, eps), x)
        return backend.stop_gradient(x_adv), success

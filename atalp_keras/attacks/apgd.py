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
round) rather than drawn for the batch as a whole, so an example's result does
not depend on the batch size or on which other points are attacked with it
(this is what makes AutoAttack's per-example guarantees exact).
"""

import math
import time
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from atalp_keras import losses
from atalp_keras.attacks.base import (Attack, check_positive_int, input_gradient,
                                      model_logits, project_linf)

# ---------------------------------------------------------------------------
# Per-example keyed randomness.
#
# A counter-based generator: every random number is a hash of (example key,
# counter, lane), so a draw for one example never depends on the others in
# the batch. The mixer is splitmix64's finaliser (a bijection on 64 bits).

_GOLDEN = 0x9E3779B97F4A7C15
_LANE = 0xD1B54A32D192ED03


def _u64(value):
    return tf.constant(value, tf.uint64)


def _mix64(z):
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(30)))
    z = z * _u64(0xBF58476D1CE4E5B9)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(27)))
    z = z * _u64(0x94D049BB133111EB)
    return tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(31)))


def _as_u64(value):
    value = tf.convert_to_tensor(value)
    if value.dtype == tf.uint64:
        return value
    return tf.cast(tf.cast(value, tf.int64), tf.uint64)


def example_keys(base, ids):
    """One 64-bit key per example from a base key and the examples' indices."""
    return _mix64(_as_u64(base) + (_as_u64(ids) + _u64(1)) * _u64(_GOLDEN))


def fold_key(keys, value):
    """Derives independent keys (one per round, per step, ...) from ``keys``."""
    salt = _mix64((_as_u64(value) + _u64(1)) * _u64(_LANE))
    return _mix64(tf.bitwise.bitwise_xor(_as_u64(keys), salt))


def keyed_uniform(keys, shape):
    """Uniform [0, 1) floats of shape ``(len(keys),) + shape``, one stream per key."""
    shape = [int(d) for d in shape]
    size = max(int(np.prod(shape)), 1)
    lanes = tf.cast(tf.range(1, size + 1, dtype=tf.int64), tf.uint64)
    z = _mix64(_as_u64(keys)[:, None] + lanes[None, :] * _u64(_GOLDEN))
    u = tf.cast(tf.bitwise.right_shift(z, _u64(40)), tf.float32) * (1.0 / 2 ** 24)
    return tf.reshape(u, [-1] + shape)


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
        raise ValueError(f"DLR needs at least 3 classes. Received: {num_classes} classes")
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
        raise ValueError(f"DLR-T needs at least 4 classes. Received: {num_classes} classes")
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


def top_other_classes(logits, labels, n):
    """The ``n`` highest-scoring classes other than ``labels`` (numpy or tensor)."""
    logits = ops.cast(logits, "float32")
    onehot = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1], dtype="bool")
    masked = ops.where(onehot, -np.inf, logits)
    return ops.cast(ops.top_k(masked, n)[1], "int32")


def _bcast(mask, x):
    """Reshapes a per-example vector so it broadcasts against ``x``."""
    return ops.reshape(mask, (-1,) + (1,) * (len(x.shape) - 1))


# ---------------------------------------------------------------------------
# Attacks made of rounds (restarts, target classes).


class RoundAttack(Attack):
    """Shared driver of attacks made of independent rounds.

    A round is one run of the inner attack (one restart, for one target class
    if targeted). In ``perturb`` each round runs only on the points no earlier
    round has broken; ``__call__`` runs every round on the whole batch (graph
    safe) and keeps, per example, the first successful round's output (or the
    last round's output when none succeeded).

    Subclasses set ``targeted_rounds`` and implement ``_round``.
    """

    targeted_rounds = False

    def __init__(self, eps, restarts=1, n_target_classes=9, seed=None, verbose=False):
        super().__init__(eps, seed=seed)
        self.restarts = check_positive_int(restarts, "restarts")
        self.n_target_classes = check_positive_int(n_target_classes, "n_target_classes")
        self.verbose = bool(verbose)
        self._rng = np.random.default_rng(seed)

    def describe(self):
        description = super().describe()
        description.pop("verbose", None)
        return description

    def _num_targets(self, num_classes):
        return min(self.n_target_classes, num_classes - 1)

    def _rounds(self, num_classes):
        """``[(target_rank or None, restart), ...]`` in the order they run."""
        if not self.targeted_rounds:
            return [(None, r) for r in range(self.restarts)]
        return [(t, r) for t in range(self._num_targets(num_classes))
                for r in range(self.restarts)]

    def _round(self, model, x, y, targets, keys, restart):
        """One run; returns ``(x_adv, success)``; must be graph safe."""
        raise NotImplementedError

    def __call__(self, model, x, y):
        x = ops.convert_to_tensor(x, "float32")
        y = ops.cast(y, "int32")
        logits = model_logits(model, x)
        num_classes = int(logits.shape[-1])
        base = keras.random.randint((), 0, 2 ** 31 - 1, seed=self.seed_generator)
        keys = example_keys(base, tf.range(tf.shape(x)[0]))
        rounds = self._rounds(num_classes)
        targets_all = None
        if self.targeted_rounds:
            targets_all = top_other_classes(logits, y, self._num_targets(num_classes))
        found = ops.not_equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), y)
        x_adv = x
        for round_no, (target_rank, restart) in enumerate(rounds):
            targets = y if target_rank is None else targets_all[:, target_rank]
            out, success = self._round(model, x, y, targets, fold_key(keys, round_no),
                                       tf.constant(restart, tf.int32))
            x_adv = ops.where(_bcast(found, x), x_adv, out)
            found = ops.logical_or(found, success)
        return tf.stop_gradient(x_adv)

    def _compiled_fns(self, model, image_shape, jit_compile):
        key = ("rounds", id(model), bool(jit_compile), tuple(image_shape))
        if key not in self._compiled:
            spec_x = tf.TensorSpec((None,) + tuple(image_shape), tf.float32)
            spec_i = tf.TensorSpec((None,), tf.int32)
            predict = tf.function(lambda xb: model_logits(model, xb),
                                  input_signature=[spec_x], jit_compile=jit_compile)
            run = tf.function(
                lambda xb, yb, tb, kb, r: self._round(model, xb, yb, tb, kb, r),
                input_signature=[spec_x, spec_i, spec_i, tf.TensorSpec((None,), tf.uint64),
                                 tf.TensorSpec((), tf.int32)],
                jit_compile=jit_compile)
            self._compiled[key] = (predict, run)
        return self._compiled[key]

    def perturb(self, model, x, y, batch_size=256, jit_compile=False, example_ids=None):
        """Runs the rounds on arrays; each round only on the still-robust points.

        Args:
            model: Callable ``model(x, training=False) -> logits``.
            x: Images in [0, 1], ``(N, H, W, C)``.
            y: True integer labels, ``(N,)``.
            batch_size: Examples per compiled call.
            jit_compile: Compile with XLA.
            example_ids: Optional ``(N,)`` integers keying each example's
                randomness (default ``arange(N)``). AutoAttack passes the
                original indices so a component gives the same per-example
                result inside AutoAttack and alone.

        Returns:
            Adversarial images (numpy). ``self.last_success`` marks the points
            this attack broke (clean mistakes are left as they are: False).
        """
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y).astype(np.int32)
        n = len(x)
        ids = np.arange(n) if example_ids is None else np.asarray(example_ids)
        keys = example_keys(int(self._rng.integers(0, 2 ** 62)), ids).numpy()
        predict, run = self._compiled_fns(model, x.shape[1:], jit_compile)
        logits = _batched(lambda xb: predict(xb), [x], batch_size)[0]
        num_classes = logits.shape[-1]
        robust = logits.argmax(-1) == y
        success = np.zeros(n, bool)
        targets_all = None
        if self.targeted_rounds:
            targets_all = np.asarray(top_other_classes(
                logits, y, self._num_targets(num_classes)))
        x_adv = x.copy()
        rounds = self._rounds(num_classes)
        for round_no, (target_rank, restart) in enumerate(rounds):
            idx = np.flatnonzero(robust)
            if idx.size == 0:
                break
            start = time.time()
            targets = y[idx] if target_rank is None else targets_all[idx, target_rank]
            round_keys = fold_key(keys[idx], round_no).numpy()
            out, succ = _batched(
                lambda xb, yb, tb, kb: run(xb, yb, tb, kb, tf.constant(restart, tf.int32)),
                [x[idx], y[idx], targets.astype(np.int32), round_keys], batch_size)
            succ = succ.astype(bool)
            x_adv[idx] = out
            robust[idx[succ]] = False
            success[idx[succ]] = True
            if self.verbose:
                what = f"restart {restart + 1}/{self.restarts}"
                if target_rank is not None:
                    what = f"target {target_rank + 1}/{len(rounds) // self.restarts}, " + what
                print(f"[{self.name}] {what}: broke {int(succ.sum())}/{idx.size}, "
                      f"robust {int(robust.sum())}/{n} ({time.time() - start:.1f} s)")
        self.last_success = success
        return x_adv


def _batched(fn, arrays, batch_size):
    """Applies ``fn`` to slices of ``arrays`` and concatenates each output."""
    outs = None
    for start in range(0, len(arrays[0]), batch_size):
        result = fn(*[a[start:start + batch_size] for a in arrays])
        if not isinstance(result, (tuple, list)):
            result = (result,)
        result = [np.asarray(r) for r in result]
        outs = [[r] for r in result] if outs is None else [o + [r] for o, r in zip(outs, result)]
    return [np.concatenate(o, axis=0) for o in outs]


class APGDAttack(RoundAttack):
    """Auto-PGD, untargeted, with cross-entropy or DLR loss (Croce & Hein 2020).

    Args:
        eps: L-inf radius on the [0, 1] pixel scale (8/255 = 0.0314).
        num_steps: Iterations per run (the paper's N_iter; 100 in AutoAttack).
        restarts: Runs from independent random starts; ``perturb`` reruns only
            the points not yet broken.
        loss: ``"ce"`` (APGD-CE) or ``"dlr"`` (APGD-DLR).
        rho: Fraction of loss increases below which the step is halved.
        momentum: Weight ``alpha`` of the new step against the previous one.
        seed: Optional int; same seed, same adversarial examples.
        verbose: Print one line per restart in ``perturb``.

    Example:
        >>> attack = APGDAttack(eps=8 / 255, num_steps=100)
        >>> x_adv = attack.perturb(model, x_test, y_test)
    """

    name = "apgd-ce"
    _losses = ("ce", "dlr")

    def __init__(self, eps, num_steps=100, restarts=1, loss="ce", rho=0.75, momentum=0.75,
                 seed=None, verbose=False):
        super().__init__(eps, restarts=restarts, seed=seed, verbose=verbose)
        self.num_steps = check_positive_int(num_steps, "num_steps")
        if loss not in self._losses:
            raise ValueError(f"`loss` must be one of {self._losses}. Received: loss={loss!r}")
        self.loss = loss
        if not 0.0 < float(rho) <= 1.0:
            raise ValueError(f"`rho` must be in (0, 1]. Received: rho={rho!r}")
        if not 0.0 < float(momentum) <= 1.0:
            raise ValueError(f"`momentum` must be in (0, 1]. Received: momentum={momentum!r}")
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.name = f"apgd-{loss}"

    def get_config(self):
        return {
            **super().get_config(),
            "num_steps": self.num_steps,
            "restarts": self.restarts,
            "loss": self.loss,
            "rho": self.rho,
            "momentum": self.momentum,
            "verbose": self.verbose,
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

    def _round(self, model, x, y, targets, keys, restart):
        eps = self.eps
        num_steps = self.num_steps
        checkpoints = apgd_checkpoints(num_steps)
        is_check = np.zeros(num_steps + 1, bool)
        period = np.zeros(num_steps + 1, np.float32)
        previous = 0
        for w in checkpoints:
            is_check[w] = True
            period[w] = w - previous
            previous = w
        is_check = tf.constant(is_check)
        period = tf.constant(period)

        def evaluate(x_cur):
            with tf.GradientTape() as tape:
                tape.watch(x_cur)
                logits = model_logits(model, x_cur)
                loss = self._objective(logits, y, targets)
                total = ops.sum(loss)
            grad = input_gradient(tape, total, x_cur)
            wrong = ops.not_equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), y)
            return tf.stop_gradient(loss), tf.stop_gradient(grad), wrong

        noise = 2.0 * keyed_uniform(keys, x.shape[1:]) - 1.0
        x0 = project_linf(x + eps * noise, x, eps)
        loss0, grad0, wrong0 = evaluate(x0)
        batch = tf.shape(x)[0]
        state = dict(
            k=tf.constant(0),
            x_cur=x0, x_prev=x0, grad=grad0, loss_cur=loss0,
            x_max=x0, grad_max=grad0, loss_max=loss0,
            step=tf.fill([batch], tf.constant(2.0 * eps, tf.float32)),
            n_up=tf.zeros([batch], tf.float32),
            loss_max_at_check=loss0,
            reduced_at_check=tf.zeros([batch], tf.bool),
            x_found=x0, found=wrong0,
        )

        def cond(s):
            return tf.logical_and(s["k"] < num_steps, tf.logical_not(tf.reduce_all(s["found"])))

        def body(s):
            k = s["k"]
            x_cur = s["x_cur"]
            alpha = tf.where(k == 0, 1.0, self.momentum)
            z = project_linf(x_cur + _bcast(s["step"], x) * ops.sign(s["grad"]), x, eps)
            x_new = project_linf(
                x_cur + alpha * (z - x_cur) + (1.0 - alpha) * (x_cur - s["x_prev"]), x, eps)
            loss_new, grad_new, wrong = evaluate(x_new)

            # The first misclassified iterate (kept fixed afterwards, so the
            # output does not depend on when the batch stops).
            keep = ops.logical_and(wrong, ops.logical_not(s["found"]))
            x_found = ops.where(_bcast(keep, x), x_new, s["x_found"])
            found = ops.logical_or(s["found"], wrong)

            n_up = s["n_up"] + ops.cast(loss_new > s["loss_cur"], "float32")
            improved = loss_new > s["loss_max"]
            x_max = ops.where(_bcast(improved, x), x_new, s["x_max"])
            grad_max = ops.where(_bcast(improved, x), grad_new, s["grad_max"])
            loss_max = ops.where(improved, loss_new, s["loss_max"])

            # Checkpoint w_j = k + 1: the two conditions of the paper.
            t = k + 1
            check = is_check[t]
            condition1 = n_up < self.rho * period[t]
            condition2 = ops.logical_and(ops.logical_not(s["reduced_at_check"]),
                                         loss_max <= s["loss_max_at_check"])
            reduce = ops.logical_and(check, ops.logical_or(condition1, condition2))
            reduce_x = _bcast(reduce, x)
            return dict(
                k=t,
                x_cur=ops.where(reduce_x, x_max, x_new),
                x_prev=ops.where(reduce_x, x_max, x_cur),
                grad=ops.where(reduce_x, grad_max, grad_new),
                loss_cur=ops.where(reduce, loss_max, loss_new),
                x_max=x_max, grad_max=grad_max, loss_max=loss_max,
                step=ops.where(reduce, 0.5 * s["step"], s["step"]),
                n_up=ops.where(check, tf.zeros_like(n_up), n_up),
                loss_max_at_check=ops.where(check, loss_max, s["loss_max_at_check"]),
                reduced_at_check=ops.where(check, reduce, s["reduced_at_check"]),
                x_found=x_found, found=found,
            )

        s = tf.while_loop(cond, lambda st: (body(st),), (state,), parallel_iterations=1)[0]
        x_out = ops.where(_bcast(s["found"], x), s["x_found"], s["x_max"])
        return tf.stop_gradient(project_linf(x_out, x, eps)), s["found"]


class APGDDLRAttack(APGDAttack):
    """APGD with the untargeted DLR loss (registry name ``"apgd-dlr"``)."""

    name = "apgd-dlr"

    def __init__(self, eps, num_steps=100, restarts=1, loss="dlr", rho=0.75, momentum=0.75,
                 seed=None, verbose=False):
        super().__init__(eps, num_steps=num_steps, restarts=restarts, loss=loss, rho=rho,
                         momentum=momentum, seed=seed, verbose=verbose)


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
        rho, momentum, seed, verbose: As in ``APGDAttack``.
    """

    name = "apgd-t"
    targeted_rounds = True

    def __init__(self, eps, num_steps=100, restarts=1, n_target_classes=9, rho=0.75,
                 momentum=0.75, seed=None, verbose=False):
        super().__init__(eps, num_steps=num_steps, restarts=restarts, loss="ce", rho=rho,
                         momentum=momentum, seed=seed, verbose=verbose)
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

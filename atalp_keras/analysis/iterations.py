"""Accuracy against the number of PGD iterations (Figure 3 of the paper):
one resumable PGD run snapshotted at every requested step count, white box or
transferred from a source model (gray/black box)."""

import numpy as np
import tensorflow as tf

from atalp_keras.analysis.checks import (check_batch_size, check_images, check_labels,
                                         numpy_cross_entropy)
from atalp_keras.attacks.base import check_eps, check_positive_int, model_logits
from atalp_keras.attacks.pgd import PGDAttack
from atalp_keras.errors import UsageError


def _logits_fn(model, input_shape):
    """A compiled ``x -> float32 logits`` in inference mode."""
    return tf.function(
        lambda x: model_logits(model, x),
        input_signature=[tf.TensorSpec((None,) + tuple(input_shape), tf.float32)],
    )


class _Trajectory:
    """Compiled PGD steps that can be resumed: ``advance(x, x_adv, y, n)``.

    The update is exactly the one of ``PGDAttack`` (METHOD.md)::

        x_{t+1} = clip(x + clip(x_t + step_size * sign(grad CE) - x, -eps, eps), 0, 1)
    """

    def __init__(self, model, eps, step_size, input_shape):
        self.eps = float(eps)
        self.step_size = float(step_size)
        spec = tf.TensorSpec((None,) + tuple(input_shape), tf.float32)

        attack = PGDAttack(eps, step_size, num_steps=1, random_start=False)

        def advance(x_natural, x_adv, y, num_steps):
            return attack.iterate(model, x_natural, x_adv, y, num_steps)

        self.advance = tf.function(advance, input_signature=[
            spec, spec, tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.int32)])


def check_iterations(iterations):
    """Strictly increasing positive step counts, as a list of ints.

    Raises:
        UsageError: naming the received counts.
    """
    values = list(np.atleast_1d(iterations))
    if not values or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool)
                             and k >= 1 for k in values):
        raise UsageError(
            "`iterations` must list integers >= 1, e.g. (10, 20, 50, 100, 200). "
            f"Received: iterations={tuple(values)}")
    values = [int(k) for k in values]
    if sorted(set(values)) != values:
        raise UsageError(
            "`iterations` must be strictly increasing step counts, e.g. "
            f"(10, 20, 50, 100, 200). Received: iterations={tuple(values)}"
        )
    return values


def _random_start(x, eps, rng):
    # eps * U(-1, 1): for one seed the starts of different eps are the same
    # point in units of eps, and consecutive draws do not depend on batching.
    noise = rng.uniform(-1.0, 1.0, size=x.shape)
    return np.clip(x + eps * noise, 0.0, 1.0).astype(np.float32)


def _start_point(x, eps, random_start, seed, x_start):
    if x_start is not None:
        x_start = np.asarray(x_start, np.float32)
        if x_start.shape != x.shape:
            raise ValueError(
                f"`x_start` must have the shape of `x`. Received: x_start.shape="
                f"{x_start.shape}, x.shape={x.shape}"
            )
        return np.clip(np.clip(x_start, x - eps, x + eps), 0.0, 1.0)
    if random_start:
        return _random_start(x, eps, np.random.default_rng(seed))
    return x.copy()


def pgd_trajectory(model, x, y, eps, step_size, iterations, random_start=True,
                   seed=0, batch_size=256, x_start=None, _trajectory=None):
    """Runs L-inf PGD once to ``max(iterations)`` steps and snapshots ``x_adv``.

    The snapshot at ``k`` is exactly PGD-k (METHOD.md) from the same start, so
    one run gives every point of an accuracy-vs-iterations curve.

    Args:
        model: Callable ``model(x, training=False) -> logits`` (the attacker's).
        x: Images ``(N, H, W, C)`` in ``[0, 1]``.
        y: Integer labels ``(N,)``.
        eps: L-inf radius on the ``[0, 1]`` scale.
        step_size: Step per iteration on the same scale.
        iterations: Strictly increasing step counts, e.g. ``(10, 20, 50)``.
        random_start: Start from ``clip(x + U(-eps, eps), 0, 1)``; otherwise
            from ``x`` itself.
        seed: Seed of the random start (numpy ``default_rng``).
        batch_size: Examples per compiled call.
        x_start: Optional explicit starting point in the eps-ball around ``x``
            (overrides ``random_start`` and ``seed``).

    Returns:
        A dict ``k -> (N, H, W, C)`` float32 adversarial images.
    """
    eps = check_eps(eps, "eps")
    step_size = check_eps(step_size, "step_size")
    iterations = check_iterations(iterations)
    x = check_images(x)
    y = check_labels(y, len(x))
    batch_size = check_batch_size(batch_size)
    trajectory = _trajectory or _Trajectory(model, eps, step_size, x.shape[1:])
    x_adv = _start_point(x, eps, random_start, seed, x_start)
    snapshots = {}
    done = 0
    for k in iterations:
        parts = []
        for start in range(0, len(x), batch_size):
            stop = start + batch_size
            parts.append(np.asarray(trajectory.advance(
                x[start:stop], x_adv[start:stop], y[start:stop], np.int32(k - done))))
        x_adv = np.concatenate(parts, axis=0) if parts else x_adv
        snapshots[k] = x_adv.copy()
        done = k
    return snapshots


def _attack_score(logits, y):
    """How bad an adversarial is for the defender: a success beats any loss."""
    loss = numpy_cross_entropy(logits, y)
    return np.where(np.argmax(logits, axis=-1) != y, np.inf, loss)


class _Curve:
    """The fixed parts of one accuracy-vs-iterations run (one source, target)."""

    def __init__(self, target, source, x, iterations, step_size, random_start,
                 restarts, batch_size):
        self.source = source
        self.iterations = iterations
        self.step_size = step_size
        self.random_start = random_start
        self.restarts = restarts
        self.batch_size = batch_size
        self.target_logits = _logits_fn(target, x.shape[1:])
        self.source_logits = (self.target_logits if source is target
                              else _logits_fn(source, x.shape[1:]))

    def worst_per_k(self, xb, yb, eps, trajectory, rngs):
        """Per k, the restart the attacker rates worst for the defender on the
        source (misclassified first, then highest loss), per example."""
        best, best_score = {}, {}
        for rng in rngs:
            x_start = _random_start(xb, eps, rng) if self.random_start else xb
            snaps = pgd_trajectory(self.source, xb, yb, eps, self.step_size,
                                   self.iterations, batch_size=self.batch_size,
                                   x_start=x_start, _trajectory=trajectory)
            for k, x_adv in snaps.items():
                if self.restarts == 1:
                    best[k] = x_adv
                    continue
                score = _attack_score(np.asarray(self.source_logits(x_adv)), yb)
                if k not in best:
                    best[k], best_score[k] = x_adv, score
                else:
                    better = score > best_score[k]
                    best[k] = np.where(better[:, None, None, None], x_adv, best[k])
                    best_score[k] = np.maximum(score, best_score[k])
        return best

    def correct_per_k(self, x, y, eps, seed, describe, progress):
        """Number of target predictions equal to ``y`` after PGD-k, per k."""
        trajectory = _Trajectory(self.source, eps, self.step_size, x.shape[1:])
        correct = {k: 0 for k in self.iterations}
        rngs = [np.random.default_rng([seed, r]) for r in range(self.restarts)]
        for start in range(0, len(x), self.batch_size):
            xb, yb = x[start:start + self.batch_size], y[start:start + self.batch_size]
            best = self.worst_per_k(xb, yb, eps, trajectory, rngs)
            for k in self.iterations:
                pred = np.argmax(np.asarray(self.target_logits(best[k])), axis=-1)
                correct[k] += int(np.sum(pred == yb))
            if progress is not None:
                progress(f"eps={eps:g} {describe}: "
                         f"{min(start + self.batch_size, len(x))}/{len(x)} examples")
        return correct


def _names(target, source, white, target_name, source_name):
    target_name = target_name or getattr(target, "name", "target")
    if white:
        return target_name, source_name or target_name
    return target_name, source_name or getattr(source, "name", "source")


def robust_accuracy_vs_iterations(target, x, y, eps_values,
                                  iterations=(10, 20, 50, 100, 200),
                                  step_size=1 / 256, source=None, seed=0,
                                  random_start=True, restarts=1, batch_size=256,
                                  target_name=None, source_name=None,
                                  progress=None):
    """Accuracy of ``target`` against PGD-k for each k (Figure 3 of the paper).

    Adversarial examples are made on ``source`` and evaluated on ``target``:
    ``source=None`` (or the target itself) is the white-box setting; a model
    of the same architecture and method trained with another seed is the
    paper's gray box; a model of another architecture is its black box (no
    query reaches the target). PGD runs once per batch and restart up to the
    largest k and is snapshotted at every requested k (``pgd_trajectory``), so
    the curve costs one PGD run instead of one per k. With ``restarts > 1``
    each k keeps, per example, the restart the *attacker* rates worst for the
    defender on the source model (misclassified first, then highest loss), as
    ``PGDAttack`` does; the target is never queried to choose.

    Args:
        target: Evaluated model, ``target(x, training=False) -> logits``.
        x: Images ``(N, H, W, C)`` in ``[0, 1]``.
        y: Integer labels ``(N,)``.
        eps_values: L-inf radii on the ``[0, 1]`` scale (the paper: 0.25, 0.5).
        iterations: Strictly increasing PGD step counts.
        step_size: Step per iteration (the paper: 1/256).
        source: Model the attack runs on; None means ``target`` (white box).
        seed: Seed of the random starts (restart ``r`` draws from
            ``default_rng([seed, r])``; every eps uses the same starts in units
            of eps, whatever the batch size).
        random_start: Start from a uniform point in the eps-ball.
        restarts: Independent PGD runs per example.
        batch_size: Examples per compiled call.
        target_name, source_name: Names stored in the records (default: the
            models' names; in the white-box setting the source is the target).
        progress: Optional callable receiving one progress message per step.

    Returns:
        A list of JSON-serialisable dicts, one per (eps, k): ``eps``,
        ``num_steps``, ``step_size``, ``restarts``, ``random_start``, ``n``,
        ``accuracy`` (fraction of ``target`` predictions equal to ``y``),
        ``setting`` (``"white"`` or ``"transfer"``), ``source``, ``target``.
    """
    eps_values = [check_eps(e, "eps") for e in np.atleast_1d(eps_values)]
    step_size = check_eps(step_size, "step_size")
    iterations = check_iterations(iterations)
    restarts = check_positive_int(restarts, "restarts")
    batch_size = check_batch_size(batch_size)
    x = check_images(x)
    y = check_labels(y, len(x))
    if not len(x):
        raise ValueError("`x` holds no images. Received: x.shape=(0, ...)")
    white = source is None or source is target
    source = target if white else source
    target_name, source_name = _names(target, source, white, target_name, source_name)
    curve = _Curve(target, source, x, iterations, step_size, random_start, restarts,
                   batch_size)
    records = []
    for eps in eps_values:
        correct = curve.correct_per_k(x, y, eps, seed, f"source={source_name}", progress)
        records += [{
            "eps": eps, "num_steps": k, "step_size": step_size, "restarts": restarts,
            "random_start": bool(random_start), "n": int(len(x)),
            "accuracy": correct[k] / len(x), "setting": "white" if white else "transfer",
            "source": str(source_name), "target": str(target_name),
        } for k in iterations]
    return records

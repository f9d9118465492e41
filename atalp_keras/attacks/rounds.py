"""The driver of attacks made of independent rounds (APGD, APGD-T, FAB-T).

A round is one run of the inner attack: one restart, for one target class if
the attack is targeted. On arrays each round runs only on the points no earlier
round has broken; ``__call__`` (graph safe) runs every round on the whole batch
and keeps, per example, the first successful round's output (or the last
round's when none succeeded). Randomness is keyed by (seed, example index,
round), see ``keys.py``.
"""

import keras
import numpy as np
from keras import ops

from atalp_keras import backend
from atalp_keras.attacks import batching
from atalp_keras.attacks.base import Attack, check_positive_int, model_logits, per_example
from atalp_keras.attacks.keys import KEY_SPEC, draw_base_key, example_keys, fold_key
from atalp_keras.attacks.progress import Progress


def top_other_classes(logits, labels, n):
    """The ``n`` highest-scoring classes other than ``labels`` (numpy or tensor)."""
    logits = ops.cast(logits, "float32")
    onehot = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1], dtype="bool")
    masked = ops.where(onehot, -np.inf, logits)
    return ops.cast(ops.top_k(masked, n)[1], "int32")


class RoundAttack(Attack):
    """Base of attacks made of rounds; subclasses set ``targeted_rounds`` and
    implement ``_round(model, x, y, targets, keys, restart) -> (x_adv, success)``
    with graph-safe ops.

    ``run(...).success`` marks the points this attack broke (clean mistakes
    are left as they are: False).
    """

    targeted_rounds = False

    def __init__(self, eps, restarts=1, n_target_classes=9, seed=None):
        super().__init__(eps, seed=seed)
        self.restarts = check_positive_int(restarts, "restarts")
        self.n_target_classes = check_positive_int(n_target_classes, "n_target_classes")
        self.restart_randomness()

    def restart_randomness(self):
        """Back to the first draw of ``seed`` (a fresh attack's randomness)."""
        self._rng = np.random.default_rng(self.seed)

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
        base = keras.random.randint((), 0, 2 ** 31 - 1, seed=self.seed_for(x))
        keys = example_keys(base, ops.arange(ops.shape(x)[0], dtype="int32"))
        targets_all = None
        if self.targeted_rounds:
            targets_all = top_other_classes(logits, y, self._num_targets(num_classes))
        found = ops.not_equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), y)
        x_adv = x
        for round_no, (target_rank, restart) in enumerate(self._rounds(num_classes)):
            targets = y if target_rank is None else targets_all[:, target_rank]
            out, success = self._round(model, x, y, targets, fold_key(keys, round_no),
                                       ops.convert_to_tensor(restart, "int32"))
            x_adv = ops.where(per_example(found, x), x_adv, out)
            found = ops.logical_or(found, success)
        return backend.stop_gradient(x_adv)

    def _compiled_round(self, model, image_shape, jit_compile):
        key = ("rounds", id(model), bool(jit_compile), tuple(image_shape))
        if key not in self._compiled:
            spec_i = ((None,), "int32")
            self._compiled[key] = backend.compiled(
                lambda xb, yb, tb, kb, r: self._round(model, xb, yb, tb, kb, r),
                [((None,) + tuple(image_shape), "float32"), spec_i, spec_i, KEY_SPEC,
                 ((), "int32")],
                jit_compile=jit_compile, stateful=lambda: (model,))
        return self._compiled[key]

    def _generate(self, model, x, y, batch_size, jit_compile, example_ids, verbose):
        """Runs the rounds on arrays, each only on the still-robust points.

        ``example_ids`` (default ``arange(N)``) key each example's randomness;
        AutoAttack passes the original indices so a component gives the same
        per-example result inside AutoAttack and alone.
        """
        n = len(x)
        ids = np.arange(n) if example_ids is None else np.asarray(example_ids)
        keys = np.asarray(example_keys(draw_base_key(self._rng), ids))
        run = self._compiled_round(model, x.shape[1:], jit_compile)
        logits = batching.predict_logits(model, x, batch_size)
        robust = logits.argmax(-1) == y
        success = np.zeros(n, bool)
        rounds = self._rounds(logits.shape[-1])
        targets_all = None
        if self.targeted_rounds:
            targets_all = np.asarray(top_other_classes(
                logits, y, self._num_targets(logits.shape[-1])))
        x_adv = x.copy()
        progress = Progress(len(rounds), verbose, title=self.name, unit_name="round")
        for round_no, (target_rank, restart) in enumerate(rounds):
            idx = np.flatnonzero(robust)
            if idx.size == 0:
                break
            targets = y[idx] if target_rank is None else targets_all[idx, target_rank]
            # Folded for every point, then indexed: the same keys (the fold is
            # per example), and on JAX one eager shape instead of one per round.
            round_keys = np.asarray(fold_key(keys, round_no))[idx]
            out, broke = batching.map_batches(
                lambda xb, yb, tb, kb: run(xb, yb, tb, kb, np.int32(restart)),
                [x[idx], y[idx], targets.astype(np.int32), round_keys],
                batch_size)
            broke = broke.astype(bool)
            x_adv[idx] = out
            robust[idx[broke]] = False
            success[idx[broke]] = True
            progress.update(round_no + 1, robust=int(robust.sum()))
        progress.finish(robust=int(robust.sum()))
        return x_adv, {"success": success}

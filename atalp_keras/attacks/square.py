"""Square attack, L-inf (Andriushchenko et al. 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV).

Score-based: it only reads the logits of queried points (no gradients) and
minimises the margin ``f_y(x) - max_{k != y} f_k(x)``. Per example:

    start:  vertical stripes, x + eps * s with one random sign per column
            and channel (constant along the height)
    step i: a square window of side ``round(sqrt(p_i * H * W))`` at a random
            position gets one new random sign per channel (+-eps); the
            candidate is kept if its margin is lower

``p_i`` starts at ``p_init`` (0.8) and halves at iterations 10, 50, 200, 500,
1000, 2000, 4000, 6000 and 8000 of a 10,000-query run, rescaled to
``n_queries``. A point stops being queried once it is misclassified.

Queries are counted per example (``run(...).extras["queries"]``) and include the clean
prediction, the stripe start and every candidate, so they never exceed
``n_queries``. A proposal that would leave the window unchanged is redrawn (up
to four draws, then its signs are flipped), as the reference does by
rejection. Randomness is keyed per example (see ``apgd.py``), so an example's
result does not depend on its batch.

This attack is for evaluation only (``in_graph = False``): on arrays it is a
numpy loop over compiled chunks of iterations, and ``__call__`` runs the same
machinery eagerly.
"""

import numpy as np
from keras import ops

from atalp_keras import backend
from atalp_keras.attacks.base import (EagerAttack, check_fraction, check_positive_int,
                                      model_logits)
from atalp_keras.attacks.batching import map_batches
from atalp_keras.attacks.keys import (KEY_SPEC, draw_base_key, example_keys, fold_key,
                                      keyed_uniform)
from atalp_keras.attacks.progress import Progress
from atalp_keras.errors import UsageError

_HALVING_AT = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_REDRAWS = 4
_INIT_ROUND = 2 ** 40


def margin_loss(labels, logits):
    """``f_y - max_{k != y} f_k`` per example; negative means misclassified."""
    logits = ops.cast(logits, "float32")
    onehot = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1], dtype="bool")
    z_y = ops.sum(ops.where(onehot, logits, 0.0), axis=-1)
    return z_y - ops.max(ops.where(onehot, -np.inf, logits), axis=-1)


class SquareAttack(EagerAttack):
    """Square attack in L-inf with the margin loss.

    Args:
        eps: L-inf radius on the [0, 1] pixel scale.
        n_queries: Query budget per example (5000 in AutoAttack), including
            the clean prediction and the start.
        p_init: Initial fraction of pixels a square covers.
        seed: Optional int; same seed, same result.
        chunk: Iterations per compiled call; finished points are dropped
            between chunks.

    ``run(...).extras["queries"]``: per-example model queries.
    """

    name = "square"

    def __init__(self, eps, n_queries=5000, p_init=0.8, seed=None, chunk=250):
        super().__init__(eps, seed=seed)
        self.n_queries = check_positive_int(n_queries, "n_queries")
        if self.n_queries < 2:
            raise UsageError("`n_queries` must be >= 2 (the clean prediction and the start). "
                             f"Received: n_queries={n_queries!r}")
        self.p_init = check_fraction(p_init, "p_init")
        self.chunk = check_positive_int(chunk, "chunk")
        self.restart_randomness()

    def restart_randomness(self):
        """Back to the first draw of ``seed`` (a fresh attack's randomness)."""
        self._rng = np.random.default_rng(self.seed)

    def get_config(self):
        return {**super().get_config(), "n_queries": self.n_queries, "p_init": self.p_init,
                "chunk": self.chunk}

    def describe(self):
        description = super().describe()
        description.pop("chunk", None)
        return description

    def _iterations(self, model, x, y, signs, margin, queries, keys, start, stop):
        """Runs iterations ``start .. stop - 1`` for a chunk of points (graph)."""
        eps = self.eps
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        rows = ops.arange(height, dtype="int32")[None, :]
        cols = ops.arange(width, dtype="int32")[None, :]
        max_side = max(min(height, width) - 1, 1)

        def cond(i, signs, margin, queries):
            active = ops.logical_and(margin > 0, queries < self.n_queries)
            return ops.logical_and(i < stop, ops.any(active))

        def body(i, signs, margin, queries):
            active = ops.logical_and(margin > 0, queries < self.n_queries)
            scaled = ops.floor(ops.cast(i, "float32") / self.n_queries * 10000.0)
            halvings = ops.sum(ops.cast(
                scaled > ops.convert_to_tensor(_HALVING_AT, "float32"), "float32"))
            p = self.p_init / ops.power(2.0, halvings)
            side = ops.cast(ops.round(ops.sqrt(p * height * width)), "int32")
            side = ops.clip(side, 1, max_side)
            u = keyed_uniform(fold_key(keys, i), (2 + channels * _REDRAWS,))
            top = ops.cast(ops.floor(u[:, 0] * ops.cast(height - side + 1, "float32")), "int32")
            left = ops.cast(ops.floor(u[:, 1] * ops.cast(width - side + 1, "float32")), "int32")
            in_rows = ops.logical_and(rows >= top[:, None], rows < top[:, None] + side)
            in_cols = ops.logical_and(cols >= left[:, None], cols < left[:, None] + side)
            window = ops.logical_and(in_rows[:, :, None], in_cols[:, None, :])[..., None]

            def draw(r):
                lanes = u[:, 2 + r * channels:2 + (r + 1) * channels]
                return ops.where(lanes < 0.5, -1.0, 1.0)[:, None, None, :]

            def unchanged(candidate):
                same = ops.logical_or(ops.logical_not(window), ops.equal(signs, candidate))
                return ops.all(same, axis=(1, 2, 3))

            chosen = draw(_REDRAWS - 1)
            for r in reversed(range(_REDRAWS - 1)):
                candidate = draw(r)
                chosen = ops.where(unchanged(candidate)[:, None, None, None], chosen, candidate)
            chosen = ops.where(unchanged(chosen)[:, None, None, None], -chosen, chosen)
            proposal = ops.where(window, chosen, signs)
            x_new = ops.clip(x + eps * proposal, 0.0, 1.0)
            margin_new = margin_loss(y, model_logits(model, x_new))
            accept = ops.logical_and(active, margin_new < margin)
            signs = ops.where(accept[:, None, None, None], proposal, signs)
            margin = ops.where(accept, margin_new, margin)
            queries = queries + ops.cast(active, "int32")
            return i + 1, signs, margin, queries

        _, signs, margin, queries = backend.while_loop(
            cond, body, (start, signs, margin, queries))
        return signs, margin, queries

    def _compiled_fns(self, model, image_shape):
        key = ("square", id(model), tuple(image_shape))
        if key not in self._compiled:
            spec_x = ((None,) + tuple(image_shape), "float32")
            spec_n = ((None,), "float32")
            spec_q = ((None,), "int32")
            stateful = lambda: (model,)  # noqa: E731
            margin = backend.compiled(lambda xb, yb: margin_loss(yb, model_logits(model, xb)),
                                      [spec_x, spec_q], stateful=stateful)
            run = backend.compiled(
                lambda xb, yb, sb, mb, qb, kb, i0, i1: self._iterations(
                    model, xb, yb, sb, mb, qb, kb, i0, i1),
                [spec_x, spec_q, spec_x, spec_n, spec_q, KEY_SPEC, ((), "int32"), ((), "int32")],
                stateful=stateful)
            self._compiled[key] = (margin, run)
        return self._compiled[key]

    def _stripe_start(self, x, y, keys, margin_fn, batch_size):
        """Signs and margins of the vertical-stripe start (one query each)."""
        width, channels = x.shape[2], x.shape[3]
        u = np.asarray(keyed_uniform(fold_key(keys, _INIT_ROUND), (1, width, channels)))
        signs = np.broadcast_to(np.where(u < 0.5, -1.0, 1.0),
                                (len(x),) + x.shape[1:]).astype(np.float32)
        x_start = np.clip(x + self.eps * signs, 0.0, 1.0)
        return signs, map_batches(margin_fn, [x_start, y], batch_size)[0]

    def _generate(self, model, x, y, batch_size, jit_compile, example_ids, verbose):
        """Runs the attack on validated arrays (``jit_compile`` is ignored).

        Returns:
            The lowest-margin point found for every correctly classified
            example (``x`` for clean mistakes), and the extras ``queries`` and
            ``success``.
        """
        del jit_compile
        n = len(x)
        ids = np.arange(n) if example_ids is None else np.asarray(example_ids)
        keys = np.asarray(example_keys(draw_base_key(self._rng), ids))
        margin_fn, run = self._compiled_fns(model, x.shape[1:])
        queries = np.ones(n, np.int32)                      # the clean prediction
        margin = map_batches(margin_fn, [x, y], batch_size)[0]
        todo = np.flatnonzero(margin > 0)
        x_adv = x.copy()
        progress = Progress(self.n_queries, verbose, title=self.name, unit_name="query")
        if todo.size:
            signs_all = np.zeros_like(x)
            signs_all[todo], margin[todo] = self._stripe_start(x[todo], y[todo], keys[todo],
                                                               margin_fn, batch_size)
            queries[todo] += 1
            iteration, total = 0, self.n_queries - 2
            while iteration < total:
                active = todo[(margin[todo] > 0) & (queries[todo] < self.n_queries)]
                if active.size == 0:
                    break
                stop = min(iteration + self.chunk, total)
                out = map_batches(
                    lambda xb, yb, sb, mb, qb, kb: run(xb, yb, sb, mb, qb, kb,
                                                       np.int32(iteration), np.int32(stop)),
                    [x[active], y[active], signs_all[active], margin[active], queries[active],
                     keys[active]], batch_size)
                signs_all[active], margin[active], queries[active] = out
                iteration = stop
                progress.update(iteration + 2, robust=int(np.sum(margin > 0)))
            x_adv[todo] = np.clip(x[todo] + self.eps * signs_all[todo], 0.0, 1.0)
        progress.finish(robust=int(np.sum(margin > 0)))
        success = np.zeros(n, bool)
        success[todo] = margin[todo] < 0
        return x_adv, {"queries": queries, "success": success}

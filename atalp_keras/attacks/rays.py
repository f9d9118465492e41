"""RayS, the hard-label L-inf attack of Chen & Gu 2020 ("RayS: a ray searching
method for hard-label adversarial attack", KDD).

RayS only needs the predicted class. It searches over sign directions
``d in {-1, +1}^D``; the radius of a direction is the distance to the decision
boundary along the ray ``clip(x + r d, 0, 1)``,

    g(d) = min { r in (0, 1] : argmax f(clip(x + r d, 0, 1)) != y }.

Starting from ``d = (1, ..., 1)``, it flips the sign of one block of
coordinates at a time (stage ``s`` cuts the flattened image into blocks of
``ceil(D / 2^s)`` coordinates; after the last block of a stage the next stage
starts, and after single coordinates it starts over at ``s = 0``). A flipped direction is kept
when one query at the current best radius is already adversarial, after which
a bisection finds its radius (to ``tol``). A direction with no finite radius
yet is first searched linearly (``r = 1/L, 2/L, ..., 1``).

Structure that keeps it label-only: the search functions receive a
``LabelOracle``, which owns the model and returns only ``argmax`` labels (and
counts queries). Nothing else of the model reaches the search.

Extras of ``run(...)``: ``distances`` is the L-inf size of the best
adversarial found per example: 0 for clean mistakes, 1.0 when no direction
reached the boundary inside the box (1 is the box's L-inf diameter);
``mean_distance`` averages it over the correctly classified points (the
paper's average decision boundary distance, ADBD); ``queries`` per example. With ``early_stop=True`` a
point stops once its distance is <= eps, so its distance is only an upper
bound; use ``early_stop=False`` to estimate ADBD with the whole budget.
Blocks follow the NHWC flattening order (the reference flattens NCHW).
"""

import math

import numpy as np

from atalp_keras.attacks.base import EagerAttack, check_positive_int, project_linf
from atalp_keras.attacks.batching import predict_classes
from atalp_keras.attacks.progress import Progress, silent
from atalp_keras.errors import UsageError


class LabelOracle:
    """Hard-label access to a model: labels only, with a per-example query count.

    Args:
        model: Callable ``model(x, training=False) -> logits``; kept private.
        image_shape: Shape of one image (kept for the signature).
        num_examples: Size of the query counter.
        batch_size: Examples per compiled call.
    """

    def __init__(self, model, image_shape, num_examples, batch_size=256):
        del image_shape
        self._model = model
        self._batch_size = int(batch_size)
        self.queries = np.zeros(num_examples, np.int64)

    def __call__(self, x, index):
        """Labels of ``x`` (``(n,) int32``); charges one query to each ``index``."""
        np.add.at(self.queries, index, 1)
        if len(x) == 0:
            return np.zeros(0, np.int32)
        return predict_classes(self._model, x, self._batch_size).astype(np.int32)


class _Search:
    """The state of one RayS search: per-example best radius and direction."""

    def __init__(self, oracle, x, y, eps, n_queries, early_stop, directions):
        self.oracle, self.y, self.eps = oracle, y, eps
        self.n_queries, self.early_stop = n_queries, early_stop
        self.shape = x.shape[1:]
        self.dim = int(np.prod(self.shape))
        self.x_flat = x.reshape(len(x), self.dim).astype(np.float32)
        self.radius = np.full(len(x), np.inf)
        self.best = (np.ones((len(x), self.dim), np.float32) if directions is None
                     else directions.astype(np.float32))
        self.wrong = oracle(x, np.arange(len(x))) != y
        self.radius[self.wrong] = 0.0

    def open_points(self):
        keep = (self.oracle.queries < self.n_queries) & ~self.wrong
        if self.early_stop:
            keep &= self.radius > self.eps
        return np.flatnonzero(keep)

    def has_budget(self, index):
        return self.oracle.queries[index] < self.n_queries

    def adversarial(self, index, radius, directions):
        points = np.clip(self.x_flat[index] + radius[:, None] * directions, 0.0, 1.0)
        return self.oracle(points.reshape((-1,) + self.shape), index) != self.y[index]

    def bracket(self, index, attempt, lin_steps):
        """``(lo, hi)`` around each attempt's radius; ``hi = inf`` where the
        attempt does not beat the current best."""
        lo, hi = np.zeros(index.size), np.full(index.size, np.inf)
        # Directions with a radius: one query at the current best radius.
        finite = np.flatnonzero(np.isfinite(self.radius[index]))
        if finite.size:
            hit = self.adversarial(index[finite], self.radius[index[finite]], attempt[finite])
            hi[finite[hit]] = self.radius[index[finite[hit]]]
        # Directions without one: linear search along the ray.
        pending = np.flatnonzero(~np.isfinite(self.radius[index]))
        for step in range(1, lin_steps + 1):
            pending = pending[self.has_budget(index[pending])]
            if pending.size == 0:
                break
            r = np.full(pending.size, step / lin_steps)
            hit = self.adversarial(index[pending], r, attempt[pending])
            hi[pending[hit]] = r[hit]
            lo[pending[hit]] = (step - 1) / lin_steps
            pending = pending[~hit]
        return lo, hi

    def bisect(self, index, attempt, lo, hi, tol):
        """Shrinks every finite bracket to ``tol`` (budget permitting)."""
        while True:
            open_ = np.flatnonzero(np.isfinite(hi) & (hi - lo > tol) & self.has_budget(index))
            if open_.size == 0:
                return hi
            mid = 0.5 * (lo[open_] + hi[open_])
            hit = self.adversarial(index[open_], mid, attempt[open_])
            hi[open_[hit]] = mid[hit]
            lo[open_[~hit]] = mid[~hit]

    def try_directions(self, index, attempt, tol, lin_steps):
        lo, hi = self.bracket(index, attempt, lin_steps)
        hi = self.bisect(index, attempt, lo, hi, tol)
        better = hi < self.radius[index]
        self.radius[index[better]] = hi[better]
        self.best[index[better]] = attempt[better]


def rays_search(oracle, x, y, eps, n_queries, early_stop=True, tol=1e-4, lin_steps=10,
                directions=None, progress=None):
    """The RayS search on arrays, seeing the model only through ``oracle``.

    Args:
        oracle: ``oracle(points, index) -> labels``; counts queries per index.
        x: Images in [0, 1], ``(N, ...)``.
        y: True labels ``(N,)``.
        eps: Stop a point once its radius is <= eps (if ``early_stop``).
        n_queries: Queries per example, the clean prediction included.
        early_stop: See above.
        tol: Bisection tolerance on the radius (L-inf).
        lin_steps: Steps of the linear search for a direction with no radius.
        directions: Optional initial sign directions ``(N, D)`` (default ones).
        progress: Optional `Progress` over the query budget.

    Returns:
        ``(radius, best_directions)``: per-example best radius (``inf`` if none
        found, 0 for clean mistakes) and the direction achieving it.
    """
    search = _Search(oracle, x, y, eps, n_queries, early_stop, directions)
    progress = progress or silent()
    stage, block, first = 0, 0, True
    while True:
        index = search.open_points()
        if index.size == 0:
            break
        attempt = search.best[index].copy()
        size = math.ceil(search.dim / 2 ** stage)
        if not first:
            attempt[:, block * size:min((block + 1) * size, search.dim)] *= -1.0
        search.try_directions(index, attempt, tol, lin_steps)
        progress.update(int(oracle.queries[index].min()),
                        robust=int(np.sum(search.radius > eps)))
        if first:
            first = False
            continue
        block += 1
        if block >= math.ceil(search.dim / size):  # no empty blocks when D is not a power of 2
            block = 0
            stage = 0 if size == 1 else stage + 1
    progress.finish(robust=int(np.sum(search.radius > eps)))
    return search.radius, search.best


class RaySAttack(EagerAttack):
    """RayS: hard-label L-inf attack (sees only predicted labels).

    Args:
        eps: L-inf radius on the [0, 1] pixel scale.
        n_queries: Label queries per example (clean prediction included).
        early_stop: Stop a point once an adversarial within ``eps`` is found.
        tol: Bisection tolerance on the boundary distance.
        lin_steps: Linear-search steps for a direction with no boundary yet.
        random_init: Start from a random sign direction (seeded by ``seed``)
            instead of the paper's all-ones direction.
        seed: Optional int, used with ``random_init``.

    Extras of ``run(...)``: ``distances``, ``mean_distance``, ``queries``.
    """

    name = "rays"

    def __init__(self, eps, n_queries=10000, early_stop=True, tol=1e-4, lin_steps=10,
                 random_init=False, seed=None):
        super().__init__(eps, seed=seed)
        self.n_queries = check_positive_int(n_queries, "n_queries")
        self.early_stop = bool(early_stop)
        if not 0.0 < float(tol) < 1.0:
            raise UsageError(f"`tol` must be in (0, 1). Received: tol={tol!r}")
        self.tol = float(tol)
        self.lin_steps = check_positive_int(lin_steps, "lin_steps")
        self.random_init = bool(random_init)
        self._rng = np.random.default_rng(seed)

    def get_config(self):
        return {**super().get_config(), "n_queries": self.n_queries,
                "early_stop": self.early_stop, "tol": self.tol, "lin_steps": self.lin_steps,
                "random_init": self.random_init}

    def _generate(self, model, x, y, batch_size, jit_compile, example_ids, verbose):
        """Runs RayS on validated arrays (``jit_compile`` and ``example_ids``
        are unused: RayS is deterministic unless ``random_init``).

        Returns:
            Adversarial images within ``eps`` for the broken points, ``x``
            for the others, and the extras.
        """
        del jit_compile, example_ids
        n = len(x)
        oracle = LabelOracle(model, x.shape[1:], n, batch_size=batch_size)
        directions = None
        if self.random_init:
            directions = self._rng.choice([-1.0, 1.0], size=(n, int(np.prod(x.shape[1:]))))
        progress = Progress(self.n_queries, verbose, title=self.name, unit_name="query")
        radius, best = rays_search(oracle, x, y, self.eps, self.n_queries,
                                   early_stop=self.early_stop, tol=self.tol,
                                   lin_steps=self.lin_steps, directions=directions,
                                   progress=progress)
        found = np.isfinite(radius)
        r = np.where(found, radius, 0.0)
        x_best = np.clip(x.reshape(n, -1) + r[:, None] * best, 0.0, 1.0).reshape(x.shape)
        distances = np.abs(x_best - x).reshape(n, -1).max(axis=1)
        distances = np.where(found, distances, 1.0)
        correct = radius != 0.0
        success = found & correct & (distances <= self.eps)
        x_adv = np.where(success.reshape((-1,) + (1,) * (x.ndim - 1)),
                         np.asarray(project_linf(x_best, x, self.eps)), x)
        extras = {"distances": distances, "queries": oracle.queries.copy(), "success": success,
                  "mean_distance": float(distances[correct].mean()) if correct.any() else 0.0}
        return x_adv.astype(np.float32), extras

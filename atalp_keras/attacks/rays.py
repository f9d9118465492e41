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

Outputs after ``perturb``: ``last_distances`` is the L-inf size of the best
adversarial found per example: 0 for clean mistakes, 1.0 when no direction
reached the boundary inside the box (1 is the box's L-inf diameter);
``last_mean_distance`` averages it over the correctly classified points (the
paper's average decision boundary distance, ADBD). With ``early_stop=True`` a
point stops once its distance is <= eps, so its distance is only an upper
bound; use ``early_stop=False`` to estimate ADBD with the whole budget.
Blocks follow the NHWC flattening order (the reference flattens NCHW).
"""

import math
import time

import numpy as np
import tensorflow as tf

from atalp_keras.attacks.base import Attack, check_positive_int, model_logits, project_linf


class LabelOracle:
    """Hard-label access to a model: labels only, with a per-example query count.

    Args:
        model: Callable ``model(x, training=False) -> logits``; kept private.
        image_shape: Shape of one image.
        num_examples: Size of the query counter.
        batch_size: Examples per compiled call.
    """

    def __init__(self, model, image_shape, num_examples, batch_size=256):
        spec = tf.TensorSpec((None,) + tuple(image_shape), tf.float32)
        self._labels = tf.function(
            lambda xb: tf.argmax(model_logits(model, xb), axis=-1, output_type=tf.int32),
            input_signature=[spec])
        self._batch_size = int(batch_size)
        self.queries = np.zeros(num_examples, np.int64)

    def __call__(self, x, index):
        """Labels of ``x`` (``(n,) int32``); charges one query to each ``index``."""
        np.add.at(self.queries, index, 1)
        out = [self._labels(x[s:s + self._batch_size]).numpy()
               for s in range(0, len(x), self._batch_size)]
        return np.concatenate(out).astype(np.int32) if out else np.zeros(0, np.int32)


def _is_adversarial(oracle, x_flat, y, shape, index, radius, directions):
    points = np.clip(x_flat[index] + radius[:, None] * directions, 0.0, 1.0)
    return oracle(points.reshape((-1,) + shape), index) != y[index]


def rays_search(oracle, x, y, eps, query_budget, early_stop=True, tol=1e-4, lin_steps=10,
                directions=None, verbose=False):
    """The RayS search on arrays, seeing the model only through ``oracle``.

    Args:
        oracle: ``oracle(points, index) -> labels``; counts queries per index.
        x: Images in [0, 1], ``(N, ...)``.
        y: True labels ``(N,)``.
        eps: Stop a point once its radius is <= eps (if ``early_stop``).
        query_budget: Queries per example, the clean prediction included.
        early_stop: See above.
        tol: Bisection tolerance on the radius (L-inf).
        lin_steps: Steps of the linear search for a direction with no radius.
        directions: Optional initial sign directions ``(N, D)`` (default ones).
        verbose: Print progress once per stage.

    Returns:
        ``(radius, best_directions)``: per-example best radius (``inf`` if none
        found, 0 for clean mistakes) and the direction achieving it.
    """
    n = len(x)
    shape = x.shape[1:]
    dim = int(np.prod(shape))
    x_flat = x.reshape(n, dim).astype(np.float32)
    all_index = np.arange(n)
    radius = np.full(n, np.inf)
    best = np.ones((n, dim), np.float32) if directions is None else directions.astype(np.float32)
    wrong = oracle(x, all_index) != y
    radius[wrong] = 0.0
    stage, block = 0, 0
    first = True
    start_time = time.time()

    def open_points():
        keep = (oracle.queries < query_budget) & ~wrong
        if early_stop:
            keep &= radius > eps
        return np.flatnonzero(keep)

    while True:
        index = open_points()
        if index.size == 0:
            break
        attempt = best[index].copy()
        size = math.ceil(dim / 2 ** stage)
        if not first:
            attempt[:, block * size:min((block + 1) * size, dim)] *= -1.0
        lo = np.zeros(index.size)
        hi = np.full(index.size, np.inf)
        # Directions with a radius: one query at the current best radius.
        finite = np.flatnonzero(np.isfinite(radius[index]))
        if finite.size:
            hit = _is_adversarial(oracle, x_flat, y, shape, index[finite],
                                  radius[index[finite]], attempt[finite])
            hi[finite[hit]] = radius[index[finite[hit]]]
        # Directions without one: linear search along the ray.
        pending = np.flatnonzero(~np.isfinite(radius[index]))
        for step in range(1, lin_steps + 1):
            pending = pending[oracle.queries[index[pending]] < query_budget]
            if pending.size == 0:
                break
            r = np.full(pending.size, step / lin_steps)
            hit = _is_adversarial(oracle, x_flat, y, shape, index[pending], r, attempt[pending])
            hi[pending[hit]] = r[hit]
            lo[pending[hit]] = (step - 1) / lin_steps
            pending = pending[~hit]
        # Bisection on every point whose attempt reached the boundary.
        while True:
            open_ = np.flatnonzero(np.isfinite(hi) & (hi - lo > tol)
                                   & (oracle.queries[index] < query_budget))
            if open_.size == 0:
                break
            mid = 0.5 * (lo[open_] + hi[open_])
            hit = _is_adversarial(oracle, x_flat, y, shape, index[open_], mid, attempt[open_])
            hi[open_[hit]] = mid[hit]
            lo[open_[~hit]] = mid[~hit]
        better = hi < radius[index]
        radius[index[better]] = hi[better]
        best[index[better]] = attempt[better]
        if first:
            first = False
            continue
        block += 1
        if block >= math.ceil(dim / size):  # no empty blocks when D is not a power of 2
            block = 0
            stage = 0 if size == 1 else stage + 1
            if verbose:
                finite_r = radius[np.isfinite(radius) & ~wrong]
                print(f"[rays] stage {stage}: open {open_points().size}/{n}, "
                      f"median radius {np.median(finite_r) if finite_r.size else float('inf'):.4f}"
                      f" ({time.time() - start_time:.1f} s)")
    return radius, best


class RaySAttack(Attack):
    """RayS: hard-label L-inf attack (sees only predicted labels).

    Args:
        eps: L-inf radius on the [0, 1] pixel scale.
        query_budget: Label queries per example (clean prediction included).
        early_stop: Stop a point once an adversarial within ``eps`` is found.
        tol: Bisection tolerance on the boundary distance.
        lin_steps: Linear-search steps for a direction with no boundary yet.
        random_init: Start from a random sign direction (seeded by ``seed``)
            instead of the paper's all-ones direction.
        seed: Optional int, used with ``random_init``.
        verbose: Print progress once per stage.

    After ``perturb``: ``last_distances``, ``last_mean_distance``,
    ``last_queries``, ``last_success``.
    """

    name = "rays"

    def __init__(self, eps, query_budget=10000, early_stop=True, tol=1e-4, lin_steps=10,
                 random_init=False, seed=None, verbose=False):
        super().__init__(eps, seed=seed)
        self.query_budget = check_positive_int(query_budget, "query_budget")
        self.early_stop = bool(early_stop)
        if not 0.0 < float(tol) < 1.0:
            raise ValueError(f"`tol` must be in (0, 1). Received: tol={tol!r}")
        self.tol = float(tol)
        self.lin_steps = check_positive_int(lin_steps, "lin_steps")
        self.random_init = bool(random_init)
        self.verbose = bool(verbose)
        self._rng = np.random.default_rng(seed)
        self.last_distances = None
        self.last_mean_distance = None
        self.last_queries = None
        self.last_success = None

    def get_config(self):
        return {**super().get_config(), "query_budget": self.query_budget,
                "early_stop": self.early_stop, "tol": self.tol, "lin_steps": self.lin_steps,
                "random_init": self.random_init, "verbose": self.verbose}

    def describe(self):
        description = super().describe()
        description.pop("verbose", None)
        return description

    def __call__(self, model, x, y):
        """Eager only: runs ``perturb`` on the tensors' values."""
        return tf.convert_to_tensor(self.perturb(model, np.asarray(x), np.asarray(y)))

    def perturb(self, model, x, y, batch_size=256, jit_compile=False, example_ids=None):
        """Runs RayS on arrays (``jit_compile`` and ``example_ids`` are unused:
        RayS is deterministic unless ``random_init``).

        Returns:
            Adversarial images within ``eps`` for the broken points, ``x``
            for the others.
        """
        del jit_compile, example_ids
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y).astype(np.int32)
        n = len(x)
        oracle = LabelOracle(model, x.shape[1:], n, batch_size=batch_size)
        directions = None
        if self.random_init:
            directions = self._rng.choice([-1.0, 1.0], size=(n, int(np.prod(x.shape[1:]))))
        radius, best = rays_search(oracle, x, y, self.eps, self.query_budget,
                                   early_stop=self.early_stop, tol=self.tol,
                                   lin_steps=self.lin_steps, directions=directions,
                                   verbose=self.verbose)
        found = np.isfinite(radius)
        r = np.where(found, radius, 0.0)
        x_best = np.clip(x.reshape(n, -1) + r[:, None] * best, 0.0, 1.0).reshape(x.shape)
        distances = np.abs(x_best - x).reshape(n, -1).max(axis=1)
        distances = np.where(found, distances, 1.0)
        correct = radius != 0.0
        success = found & correct & (distances <= self.eps)
        x_adv = np.where(success.reshape((-1,) + (1,) * (x.ndim - 1)),
                         np.asarray(project_linf(x_best, x, self.eps)), x)
        self.last_distances = distances
        self.last_mean_distance = float(distances[correct].mean()) if correct.any() else 0.0
        self.last_queries = oracle.queries.copy()
        self.last_success = success
        return x_adv.astype(np.float32)

"""The loss surface around an input (Figure 6 of the paper)."""

import numpy as np
import tensorflow as tf
from keras import ops

from atalp_keras import losses
from atalp_keras.analysis.checks import check_batch_size, check_images, check_labels
from atalp_keras.attacks.base import check_eps, input_gradient, model_logits


def _check_grid(grid):
    grid = np.asarray(grid, np.float64)
    if grid.ndim != 1 or grid.size < 1 or not np.all(np.isfinite(grid)):
        raise ValueError(
            "`grid` must be a non-empty 1-D array of finite coordinates. "
            f"Received: grid={grid!r}"
        )
    return grid


def _gradient_sign(model, x, y, batch_size):
    """``sign(grad_x CE(f(x), y))`` per image, 0 where the gradient is 0."""
    @tf.function(input_signature=[
        tf.TensorSpec((None,) + x.shape[1:], tf.float32),
        tf.TensorSpec((None,), tf.int32)])
    def loss_gradient(xb, yb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = ops.sum(losses.cross_entropy(yb, model_logits(model, xb)))
        return input_gradient(tape, loss, xb)

    if not len(x):
        return np.zeros_like(x)
    return np.concatenate([
        np.sign(np.asarray(loss_gradient(x[s:s + batch_size], y[s:s + batch_size])))
        for s in range(0, len(x), batch_size)
    ], axis=0).astype(np.float32)


def _grid_losses(model, x, y, grid, r1, r2, batch_size):
    """``(N, A * B)`` losses at every ``(a, b)`` of the grid, per image."""
    losses_of = tf.function(
        lambda xb, yb: losses.cross_entropy(yb, model_logits(model, xb)),
        input_signature=[tf.TensorSpec((None,) + x.shape[1:], tf.float32),
                         tf.TensorSpec((None,), tf.int32)])
    a_grid, b_grid = np.meshgrid(grid, grid, indexing="ij")
    a_flat = a_grid.reshape(-1).astype(np.float32)
    b_flat = b_grid.reshape(-1).astype(np.float32)
    z = np.empty((len(x), a_flat.size), np.float64)
    for n in range(len(x)):
        for start in range(0, a_flat.size, batch_size):
            a = a_flat[start:start + batch_size, None, None, None]
            b = b_flat[start:start + batch_size, None, None, None]
            points = np.clip(x[n] + a * r1[n] + b * r2[n], 0.0, 1.0)
            labels = np.full((len(points),), y[n], np.int32)
            z[n, start:start + len(points)] = np.asarray(losses_of(points, labels))
    return z


def loss_landscape(model, x, y, grid=None, eps_max=0.25, seed=0, per_image=False,
                   batch_size=256, return_directions=False):
    """Cross-entropy on a 2-D slice through input space (Figure 6 of the paper).

    ``z[i, j] = CE(f(clip(x + a_i * r1 + b_j * r2, 0, 1)), y)`` with
    ``r1 = sign(grad_x CE(f(x), y))`` (per image; 0 where the gradient is 0)
    and ``r2`` Rademacher (each pixel +1 or -1 with probability 0.5). The
    perturbed inputs are clipped to the valid ``[0, 1]`` pixel range, so near
    saturated pixels a step moves less than ``|a| + |b|``.

    Args:
        model: Callable ``model(x, training=False) -> logits``.
        x: Images ``(N, H, W, C)`` in ``[0, 1]``.
        y: Integer labels ``(N,)``.
        grid: 1-D coordinates used for both ``a`` and ``b``; None means
            ``np.linspace(-eps_max, eps_max, 21)`` (with its centre exactly 0).
        eps_max: Half-width of the default grid, on the ``[0, 1]`` scale.
        seed: Seed of the Rademacher direction (numpy ``default_rng``).
        per_image: Return ``z`` per image ``(N, A, B)`` instead of the mean
            over images ``(A, B)``.
        batch_size: Perturbed images per forward pass.
        return_directions: Also return ``(r1, r2)``, each ``(N, H, W, C)``.

    Returns:
        ``(a, b, z)`` (plus ``(r1, r2)`` if asked): the grid coordinates and
        the losses, ``z[..., i, j]`` at ``a[i], b[j]``.
    """
    x = check_images(x)
    y = check_labels(y, len(x))
    batch_size = check_batch_size(batch_size)
    if grid is None:
        grid = centred_grid(check_eps(eps_max, "eps_max"), 21)
    grid = _check_grid(grid)
    r1 = _gradient_sign(model, x, y, batch_size)
    rng = np.random.default_rng(seed)
    r2 = rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape)
    z = _grid_losses(model, x, y, grid, r1, r2, batch_size)
    z = z.reshape(len(x), grid.size, grid.size)
    if not per_image:
        z = z.mean(axis=0)
    out = (grid.copy(), grid.copy(), z)
    return out + ((r1, r2),) if return_directions else out


def centred_grid(eps_max, grid_points):
    """``grid_points`` coordinates from ``-eps_max`` to ``eps_max``; with an
    odd count the middle one is exactly 0, the clean input."""
    grid = np.linspace(-eps_max, eps_max, grid_points)
    if grid_points % 2:
        grid[grid_points // 2] = 0.0
    return grid

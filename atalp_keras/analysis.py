"""The analyses of the AT + ALP paper (Goodman et al. 2020), as library calls.

- ``attention_maps``: the stage attention maps of Figures 1 and 4.
- ``robust_accuracy_vs_iterations``: accuracy against PGD-k for k = 10..200,
  white-box or transferred from a source model (gray/black box, Figure 3).
- ``loss_landscape``: ``z(a, b) = CE(f(x + a r1 + b r2), y)`` with
  ``r1 = sign(grad_x CE)`` and Rademacher ``r2`` (Figure 6).
- ``key_region_activation``: mean upsampled attention inside human-annotated
  key-region masks (Table 3).

Conventions (METHOD.md): images are float in ``[0, 1]``, ``eps`` and
``step_size`` are on that scale, ``model(x, training=False)`` returns logits.
Nothing here reads flags or prints; long loops report through an optional
``progress(message)`` callback.
"""

import numpy as np
import tensorflow as tf
from keras import ops

from atalp_keras import losses
from atalp_keras.attacks.base import (check_eps, check_positive_int, input_gradient,
                                      model_logits)
from atalp_keras.attacks.pgd import PGDAttack
from atalp_keras.attention import attention_map
from atalp_keras.features import build_feature_model, resolve_stage_layers


# ----------------------------------------------------------------- helpers


def _check_functional(classifier, what):
    """The stage analyses need a functional model (a ``.keras`` file)."""
    try:
        inputs = getattr(classifier, "inputs", None)
    except Exception:  # Subclassed models may raise from the property.
        inputs = None
    if not inputs or not hasattr(classifier, "get_layer"):
        raise ValueError(
            f"{what} needs the classifier's stage outputs, which only a functional "
            "Keras model has (a .keras file written by train.py); a SavedModel "
            "exposes logits only. Received: classifier of type "
            f"{type(classifier).__name__}"
        )


def _check_batch_size(batch_size):
    return check_positive_int(batch_size, "batch_size")


def _check_images(x, name="x"):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(
            f"`{name}` must be images of shape (N, H, W, C). Received: "
            f"{name}.shape={x.shape}"
        )
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(
            f"`{name}` pixels must be in [0, 1] (divide 0-255 images by 255). "
            f"Received: min={x.min():g}, max={x.max():g}"
        )
    return x


def _check_labels(y, n):
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(
            f"Labels must have shape ({n},), one integer class per image. "
            f"Received: y.shape={y.shape}"
        )
    return y.astype(np.int32)


def _logits_fn(model, input_shape):
    """A compiled ``x -> float32 logits`` in inference mode."""
    return tf.function(
        lambda x: model_logits(model, x),
        input_signature=[tf.TensorSpec((None,) + tuple(input_shape), tf.float32)],
    )


def _numpy_cross_entropy(logits, y):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -log_probs[np.arange(len(y)), y]


# ----------------------------------------------------------------- attention


def attention_maps(classifier, x, stage_layers=None, batch_size=256):
    """Spatial attention maps (p = 2) of each stage, for Figures 1 and 4.

    Args:
        classifier: Functional ``keras.Model`` from ``[0, 1]`` images to logits
            (a ``.keras`` classifier; a SavedModel has no stage outputs).
        x: Images, ``(N, H, W, C)`` in ``[0, 1]``.
        stage_layers: Names of the stage layers; None finds the ResNet stage
            ends ``conv{2..5}_block{N}_out`` (see ``resolve_stage_layers``).
        batch_size: Images per forward pass.

    Returns:
        A list with one ``(N, h, w)`` float32 array per stage: the normalised
        map ``q_hat`` of METHOD.md (unit L2 norm over its ``h * w`` cells)
        reshaped to the stage's spatial size. Use ``upsample_to`` to overlay it
        on the image.
    """
    _check_functional(classifier, "attention_maps")
    x = _check_images(x)
    batch_size = _check_batch_size(batch_size)
    names = resolve_stage_layers(classifier, stage_layers)
    feature_model = build_feature_model(classifier, names)
    spatial = [tuple(classifier.get_layer(n).output.shape[1:3]) for n in names]

    @tf.function(input_signature=[
        tf.TensorSpec((None,) + tuple(x.shape[1:]), tf.float32)])
    def maps_of(batch):
        stages = feature_model(batch, training=False)["stages"]
        return [attention_map(stage) for stage in stages]

    chunks = [[] for _ in names]
    for start in range(0, len(x), batch_size):
        for i, flat in enumerate(maps_of(x[start:start + batch_size])):
            flat = np.asarray(flat)
            height, width = spatial[i]
            if height is None or width is None:  # Models accepting any size.
                raise ValueError(
                    f"Stage {names[i]!r} has no fixed spatial size, so its map "
                    "cannot be reshaped. Build the classifier with a fixed "
                    "input shape."
                )
            chunks[i].append(flat.reshape(-1, height, width))
    return [np.concatenate(c, axis=0) if c else np.zeros((0,) + s, np.float32)
            for c, s in zip(chunks, spatial)]


def upsample_to(maps, image_size):
    """Resizes attention maps to the image size and scales each to max 1.

    Bilinear resizing (half-pixel centres, no antialiasing) of non-negative
    maps keeps them non-negative; each map is then divided by its maximum, so
    it reads as "fraction of the strongest activation" (METHOD.md, Table 3).
    An all-zero map stays zero.

    Args:
        maps: ``(N, h, w)`` array, one stage of ``attention_maps``.
        image_size: ``(H, W)`` or one int for square images.

    Returns:
        ``(N, H, W)`` float32 with each map's maximum equal to 1.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(
            f"`maps` must have shape (N, h, w). Received: maps.shape={maps.shape}"
        )
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(
            f"`image_size` must be (H, W) of positive ints. Received: "
            f"image_size={image_size!r}"
        )
    if maps.shape[1:] == image_size:
        resized = maps.copy()
    else:
        resized = tf.image.resize(maps[..., None], image_size, method="bilinear",
                                  antialias=False).numpy()[..., 0]
    peak = resized.reshape(len(resized), -1).max(axis=1, initial=0.0)
    return (resized / np.maximum(peak, 1e-12)[:, None, None]).astype(np.float32)


# ------------------------------------------------------- accuracy vs. k steps


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


def _check_iterations(iterations):
    values = [check_positive_int(k, "iterations") for k in np.atleast_1d(iterations)]
    if not values:
        raise ValueError("`iterations` must list at least one step count. Received: []")
    if sorted(set(values)) != values:
        raise ValueError(
            "`iterations` must be strictly increasing step counts, e.g. "
            f"(10, 20, 50, 100, 200). Received: iterations={tuple(values)}"
        )
    return values


def _random_start(x, eps, rng):
    # eps * U(-1, 1): for one seed the starts of different eps are the same
    # point in units of eps, and consecutive draws do not depend on batching.
    noise = rng.uniform(-1.0, 1.0, size=x.shape)
    return np.clip(x + eps * noise, 0.0, 1.0).astype(np.float32)


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
    iterations = _check_iterations(iterations)
    x = _check_images(x)
    y = _check_labels(y, len(x))
    batch_size = _check_batch_size(batch_size)
    trajectory = _trajectory or _Trajectory(model, eps, step_size, x.shape[1:])
    if x_start is not None:
        x_start = np.asarray(x_start, np.float32)
        if x_start.shape != x.shape:
            raise ValueError(
                f"`x_start` must have the shape of `x`. Received: x_start.shape="
                f"{x_start.shape}, x.shape={x.shape}"
            )
        x_adv = np.clip(np.clip(x_start, x - eps, x + eps), 0.0, 1.0)
    elif random_start:
        x_adv = _random_start(x, eps, np.random.default_rng(seed))
    else:
        x_adv = x.copy()
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
    loss = _numpy_cross_entropy(logits, y)
    return np.where(np.argmax(logits, axis=-1) != y, np.inf, loss)


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
    largest k and is snapshotted at every requested k; each snapshot is exactly
    PGD-k from the same random start (``pgd_trajectory``), so the curve costs
    one PGD run instead of one per k.

    With ``restarts > 1`` each k keeps, per example, the restart the
    *attacker* rates worst for the defender on the source model (misclassified
    first, then highest loss), as ``PGDAttack`` does; the target is never
    queried to choose.

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
        target_name: Name stored in the records (default: the model's name).
        source_name: Name stored in the records (default: the source model's
            name, or ``target_name`` in the white-box setting).
        progress: Optional callable receiving one progress message per step.

    Returns:
        A list of JSON-serialisable dicts, one per (eps, k): ``eps``,
        ``num_steps``, ``step_size``, ``restarts``, ``random_start``, ``n``,
        ``accuracy`` (fraction of ``target`` predictions equal to ``y``),
        ``setting`` (``"white"`` or ``"transfer"``), ``source``, ``target``.
    """
    eps_values = [check_eps(e, "eps") for e in np.atleast_1d(eps_values)]
    step_size = check_eps(step_size, "step_size")
    iterations = _check_iterations(iterations)
    restarts = check_positive_int(restarts, "restarts")
    batch_size = _check_batch_size(batch_size)
    x = _check_images(x)
    y = _check_labels(y, len(x))
    if not len(x):
        raise ValueError("`x` holds no images. Received: x.shape=(0, ...)")
    white = source is None or source is target
    source = target if white else source
    target_name = target_name or getattr(target, "name", "target")
    if white:
        source_name = source_name or target_name
    else:
        source_name = source_name or getattr(source, "name", "source")
    setting = "white" if white else "transfer"
    target_logits = _logits_fn(target, x.shape[1:])
    source_logits = target_logits if white else _logits_fn(source, x.shape[1:])

    records = []
    for eps in eps_values:
        trajectory = _Trajectory(source, eps, step_size, x.shape[1:])
        correct = {k: 0 for k in iterations}
        rngs = [np.random.default_rng([seed, r]) for r in range(restarts)]
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            best, best_score = {}, {}
            for r in range(restarts):
                x_start = _random_start(xb, eps, rngs[r]) if random_start else xb
                snaps = pgd_trajectory(source, xb, yb, eps, step_size, iterations,
                                       batch_size=batch_size, x_start=x_start,
                                       _trajectory=trajectory)
                for k, x_adv in snaps.items():
                    if restarts == 1:
                        best[k] = x_adv
                        continue
                    score = _attack_score(np.asarray(source_logits(x_adv)), yb)
                    if k not in best:
                        best[k], best_score[k] = x_adv, score
                    else:
                        better = score > best_score[k]
                        best[k] = np.where(better[:, None, None, None], x_adv, best[k])
                        best_score[k] = np.maximum(score, best_score[k])
            for k in iterations:
                pred = np.argmax(np.asarray(target_logits(best[k])), axis=-1)
                correct[k] += int(np.sum(pred == yb))
            if progress is not None:
                progress(f"eps={eps:g} source={source_name}: "
                         f"{min(start + batch_size, len(x))}/{len(x)} examples")
        for k in iterations:
            records.append({
                "eps": eps,
                "num_steps": k,
                "step_size": step_size,
                "restarts": restarts,
                "random_start": bool(random_start),
                "n": int(len(x)),
                "accuracy": correct[k] / len(x),
                "setting": setting,
                "source": str(source_name),
                "target": str(target_name),
            })
    return records


# ----------------------------------------------------------------- landscape


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
    x = _check_images(x)
    y = _check_labels(y, len(x))
    batch_size = _check_batch_size(batch_size)
    if grid is None:
        eps_max = check_eps(eps_max, "eps_max")
        grid = np.linspace(-eps_max, eps_max, 21)
        grid[10] = 0.0  # Exactly the clean input at the centre.
    grid = np.asarray(grid, np.float64)
    if grid.ndim != 1 or grid.size < 1 or not np.all(np.isfinite(grid)):
        raise ValueError(
            "`grid` must be a non-empty 1-D array of finite coordinates. "
            f"Received: grid={grid!r}"
        )

    @tf.function(input_signature=[
        tf.TensorSpec((None,) + x.shape[1:], tf.float32),
        tf.TensorSpec((None,), tf.int32)])
    def loss_gradient(xb, yb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = ops.sum(losses.cross_entropy(yb, model_logits(model, xb)))
        return input_gradient(tape, loss, xb)

    losses_of = tf.function(
        lambda xb, yb: losses.cross_entropy(yb, model_logits(model, xb)),
        input_signature=[tf.TensorSpec((None,) + x.shape[1:], tf.float32),
                         tf.TensorSpec((None,), tf.int32)])

    r1 = np.concatenate([
        np.sign(np.asarray(loss_gradient(x[s:s + batch_size], y[s:s + batch_size])))
        for s in range(0, len(x), batch_size)
    ], axis=0).astype(np.float32) if len(x) else np.zeros_like(x)
    rng = np.random.default_rng(seed)
    r2 = rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape)

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
    z = z.reshape(len(x), grid.size, grid.size)
    if not per_image:
        z = z.mean(axis=0)
    out = (grid.copy(), grid.copy(), z)
    return out + ((r1, r2),) if return_directions else out


# ----------------------------------------------------------------- key regions


def check_masks(images, masks):
    """Validates key-region masks against their images.

    Args:
        images: ``(N, H, W, C)`` images.
        masks: ``(N, H, W)`` or ``(N, H, W, 1)`` binary masks (bool, or numbers
            that are all 0 or 1), one per image, each with at least one 1.

    Returns:
        ``(N, H, W)`` float32 masks of 0s and 1s.

    Raises:
        ValueError: naming the received shapes or values when the masks do not
            match the images or are not binary.
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if images.ndim != 4:
        raise ValueError(
            f"Images must have shape (N, H, W, C). Received: images.shape={images.shape}"
        )
    if masks.ndim != 3:
        raise ValueError(
            "Masks must have shape (N, H, W) or (N, H, W, 1), one binary mask per "
            f"image. Received: masks.shape={masks.shape}"
        )
    if masks.shape[0] != images.shape[0]:
        raise ValueError(
            f"Need one mask per image. Received: {images.shape[0]} images and "
            f"{masks.shape[0]} masks"
        )
    if masks.shape[1:] != images.shape[1:3]:
        raise ValueError(
            "Masks must have the images' height and width. Received: images of "
            f"{images.shape[1]}x{images.shape[2]}, masks of {masks.shape[1]}x{masks.shape[2]}"
        )
    if masks.dtype != bool:
        values = np.unique(masks)
        if not np.all(np.isin(values, (0, 1))):
            shown = ", ".join(f"{v:g}" for v in values[:8])
            more = f" ... ({len(values)} distinct)" if len(values) > 8 else ""
            raise ValueError(
                "Masks must be binary (0 = background, 1 = key region). Received "
                f"values: {shown}{more}"
            )
    masks = masks.astype(np.float32)
    empty = np.flatnonzero(masks.reshape(len(masks), -1).sum(axis=1) == 0)
    if empty.size:
        raise ValueError(
            "Every mask needs at least one key-region pixel (a 1). Received empty "
            f"masks at indices: {empty[:10].tolist()}"
        )
    return masks


def key_region_activation(classifier, images, masks, stage_layers=None,
                          batch_size=256):
    """Mean attention inside the key regions, per stage (Table 3 of the paper).

    For each image and stage the attention map (``attention_maps``) is
    upsampled to the image size and scaled to max 1 (``upsample_to``); its
    mean over the mask's pixels is then averaged over the images.

    Args:
        classifier: Functional ``keras.Model`` (a ``.keras`` classifier).
        images: ``(N, H, W, C)`` images in ``[0, 1]``.
        masks: ``(N, H, W)`` or ``(N, H, W, 1)`` binary masks (see
            ``check_masks``); 1 marks a discriminative part.
        stage_layers: Stage layer names; None finds ResNet stage ends.
        batch_size: Images per forward pass.

    Returns:
        A dict ``stage layer name -> mean activation in [0, 1]``, in stage order.
    """
    _check_functional(classifier, "key_region_activation")
    masks = check_masks(images, masks)
    images = _check_images(images, "images")
    names = resolve_stage_layers(classifier, stage_layers)
    maps = attention_maps(classifier, images, names, batch_size=batch_size)
    result = {}
    area = masks.reshape(len(masks), -1).sum(axis=1)
    for name, stage_maps in zip(names, maps):
        upsampled = upsample_to(stage_maps, images.shape[1:3])
        inside = (upsampled * masks).reshape(len(masks), -1).sum(axis=1) / area
        result[name] = float(np.mean(inside))
    return result

"""Matplotlib figures for the analyses (Figures 1, 3, 4 and 6 of the paper)
and the accuracy-vs-eps curves of the evaluation.

Figures are built on ``matplotlib.figure.Figure`` directly (the Agg canvas, no
``pyplot``), so nothing here changes the global backend or needs a display.
Each figure has a builder returning the `Figure` (``*_figure``: its artists
hold the plotted values, to inspect or restyle) and a ``plot_*`` function that
builds it, writes one image file and returns its path.
"""

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from atalp_keras.analysis.attention import short_stage_name, upsample_to

_MAP_CMAP = "jet"
_MAP_ALPHA = 0.5


def _save(fig, path):
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi, bbox_inches="tight")
    return path


def _show_image(ax, image):
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")


def _class_name(index, class_names):
    index = int(index)
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return str(index)


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_model_rows(rows, model, images, stage_names, labels, class_names):
    """One model's rows of the attention grid: per image, the clean and the
    adversarial image, then per stage both maps overlaid on them."""
    upsampled = [upsample_to(maps, images.shape[1:3]) for maps in model["maps"]]
    upsampled_adv = [upsample_to(maps, images.shape[1:3]) for maps in model["maps_adv"]]
    images_adv = np.asarray(model["images_adv"], np.float32)
    num_stages = (len(rows[0]) - 2) // 2
    for i, row in enumerate(rows):
        pred, pred_adv = int(model["pred"][i]), int(model["pred_adv"][i])
        ok = None if labels is None else int(labels[i])
        for ax, image, kind, p in ((row[0], images[i], "clean", pred),
                                   (row[1], images_adv[i], "adv", pred_adv)):
            _show_image(ax, image)
            color = "black" if ok is None else ("green" if p == ok else "red")
            ax.set_title(f"{kind}: pred {_class_name(p, class_names)}",
                         fontsize=8, color=color)
            _off(ax)
        label_text = "" if ok is None else f"\nlabel {_class_name(ok, class_names)}"
        row[0].set_ylabel(f"{model['name']}{label_text}", fontsize=8)
        for s in range(num_stages):
            for j, (maps, image, kind) in enumerate(
                    ((upsampled, images[i], "clean"), (upsampled_adv, images_adv[i], "adv"))):
                ax = row[2 + 2 * s + j]
                _off(ax)
                if s >= len(maps):
                    ax.set_axis_off()
                    continue
                _show_image(ax, image)
                ax.imshow(maps[s][i], cmap=_MAP_CMAP, alpha=_MAP_ALPHA, vmin=0.0,
                          vmax=1.0, interpolation="bilinear")
                if i == 0:
                    ax.set_title(f"{stage_names[s]} {kind}", fontsize=8)


def attention_grid_figure(images, models, labels=None, class_names=None, title=None,
                          short_stage_names=True):
    """Clean and adversarial attention maps per stage (Figures 1 and 4).

    Rows are images, grouped by model (models stacked top to bottom). Columns:
    the clean image, the adversarial image, then for each stage the clean and
    the adversarial attention map (upsampled, scaled to max 1) overlaid on the
    image. The image titles give the model's prediction for the clean and the
    adversarial input (green when it equals the label, red otherwise).

    Args:
        images: ``(N, H, W, C)`` clean images in ``[0, 1]``.
        models: A list with one dict per model: ``name``; ``images_adv``
            (``(N, H, W, C)``, the adversarial twins shown for that model);
            ``stage_names``; ``maps`` and ``maps_adv`` (lists, per stage, of
            ``(N, h, w)`` maps from ``analysis.attention_maps``); ``pred`` and
            ``pred_adv`` (``(N,)`` predicted classes).
        labels: Optional ``(N,)`` true labels.
        class_names: Optional names of the classes.
        title: Optional figure title.
        short_stage_names: Show ``conv2_block1_out`` as ``conv2_x``.

    Returns:
        The `Figure`: ``fig.axes`` row by row, ``2 + 2 * stages`` per row.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or not len(images):
        raise ValueError(
            f"`images` must be a non-empty (N, H, W, C) array. Received: shape {images.shape}"
        )
    if not models:
        raise ValueError("`models` must list at least one model. Received: []")
    num_images = len(images)
    num_stages = max(len(m["maps"]) for m in models)
    num_cols = 2 + 2 * num_stages
    num_rows = num_images * len(models)
    fig = Figure(figsize=(1.7 * num_cols, 1.8 * num_rows + (0.4 if title else 0)), dpi=100)
    axes = fig.subplots(num_rows, num_cols, squeeze=False)
    for m_index, model in enumerate(models):
        names = list(model.get("stage_names") or
                     [f"stage {s + 1}" for s in range(len(model["maps"]))])
        if short_stage_names:
            names = [short_stage_name(n) for n in names]
        rows = axes[m_index * num_images:(m_index + 1) * num_images]
        _draw_model_rows(rows, model, images, names, labels, class_names)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_attention_grid(images, models, path, labels=None, class_names=None,
                        title=None, short_stage_names=True):
    """Writes `attention_grid_figure` to ``path`` (``.png``, ``.pdf``, ...);
    returns ``path``."""
    return _save(attention_grid_figure(images, models, labels, class_names, title,
                                       short_stage_names), path)


def _accuracy_axes(ax, xlabel):
    """Labels, 0-100 % range, grid and legend of an accuracy plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _nonempty(records):
    records = list(records)
    if not records:
        raise ValueError("No records to plot. Received: records=[]")
    return records


def _group(records, key_fn):
    groups = {}
    for record in records:
        groups.setdefault(key_fn(record), []).append(record)
    return groups


def _iteration_label(record):
    target = record.get("target")
    source = record.get("source")
    setting = record.get("setting", "")
    if setting == "white" or source is None or source == target:
        return f"{target} (white-box)" if target else "white-box"
    return f"{target} <- {source}" if target else f"from {source}"


def accuracy_vs_iterations_figure(records, title=None):
    """Robust accuracy against PGD iterations, one panel per eps (Figure 3).

    Args:
        records: Dicts from ``analysis.robust_accuracy_vs_iterations`` (keys
            ``eps``, ``num_steps``, ``accuracy``, ``setting``, ``source``,
            ``target``); one line per (target, source).
        title: Optional figure title.

    Returns:
        The `Figure`: one axes per eps (increasing), one line per (target,
        source) with the accuracies in percent.
    """
    records = _nonempty(records)
    by_eps = _group(records, lambda r: float(r["eps"]))
    eps_values = sorted(by_eps)
    fig = Figure(figsize=(5.0 * len(eps_values), 4.0), dpi=100)
    axes = fig.subplots(1, len(eps_values), squeeze=False)[0]
    for ax, eps in zip(axes, eps_values):
        for label, group in _group(by_eps[eps], _iteration_label).items():
            group = sorted(group, key=lambda r: r["num_steps"])
            ax.plot([r["num_steps"] for r in group],
                    [100.0 * r["accuracy"] for r in group], marker="o", label=label)
        steps = sorted({r["num_steps"] for r in by_eps[eps]})
        if steps[-1] >= 10 * steps[0]:
            ax.set_xscale("log")  # 10, 20, 50, 100, 200 spread evenly.
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(steps)
        ax.set_xticklabels([str(s) for s in steps])
        _accuracy_axes(ax, "PGD iterations")
        step = by_eps[eps][0].get("step_size")
        step_text = f", step {step:.4g}" if step is not None else ""
        ax.set_title(f"eps = {eps:.4g} (= {eps * 256:.4g}/256){step_text}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_iterations(records, path, title=None):
    """Writes `accuracy_vs_iterations_figure` to ``path``; returns ``path``."""
    return _save(accuracy_vs_iterations_figure(records, title), path)


def loss_landscape_figure(landscapes, kind="surface", share_z=True, title=None):
    """Loss surfaces ``z(a, b)`` per model, side by side (Figure 6).

    Args:
        landscapes: Dict ``model name -> (a, b, z)`` from
            ``analysis.loss_landscape`` (``z`` of shape ``(len(a), len(b))``).
        kind: ``"surface"`` (3-D) or ``"contour"`` (filled contours).
        share_z: Use one loss scale for all models so they compare directly.
        title: Optional figure title.

    Returns:
        The `Figure`: one axes per model, in the order of ``landscapes``
        (contour plots add one colorbar axes after each).
    """
    if kind not in ("surface", "contour"):
        raise ValueError(f"`kind` must be 'surface' or 'contour'. Received: kind={kind!r}")
    if not landscapes:
        raise ValueError("No landscapes to plot. Received: landscapes={}")
    items = list(landscapes.items())
    for name, (a, b, z) in items:
        if np.shape(z) != (len(a), len(b)):
            raise ValueError(
                f"Landscape {name!r}: z must have shape (len(a), len(b)) = "
                f"({len(a)}, {len(b)}). Received: z.shape={np.shape(z)}"
            )
    z_min = min(float(np.min(z)) for _, (_, _, z) in items)
    z_max = max(float(np.max(z)) for _, (_, _, z) in items)
    cols = min(len(items), 4)
    rows = -(-len(items) // cols)
    fig = Figure(figsize=(4.5 * cols, 4.0 * rows), dpi=100)
    for index, (name, (a, b, z)) in enumerate(items):
        a_grid, b_grid = np.meshgrid(np.asarray(a), np.asarray(b), indexing="ij")
        z = np.asarray(z)
        if kind == "surface":
            ax = fig.add_subplot(rows, cols, index + 1, projection="3d")
            ax.plot_surface(a_grid, b_grid, z, cmap="viridis", linewidth=0,
                            antialiased=True)
            ax.set_zlabel("loss")
            if share_z:
                ax.set_zlim(z_min, z_max)
        else:
            ax = fig.add_subplot(rows, cols, index + 1)
            levels = np.linspace(z_min, z_max, 21) if share_z and z_max > z_min else 20
            filled = ax.contourf(a_grid, b_grid, z, levels=levels, cmap="viridis")
            fig.colorbar(filled, ax=ax, label="loss")
        ax.set_xlabel("a (along sign of gradient)")
        ax.set_ylabel("b (Rademacher)")
        ax.set_title(name, fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_loss_landscape(landscapes, path, kind="surface", share_z=True, title=None):
    """Writes `loss_landscape_figure` to ``path``; returns ``path``."""
    return _save(loss_landscape_figure(landscapes, kind, share_z, title), path)


def accuracy_vs_eps_figure(records, title=None):
    """Accuracy against the perturbation size, one line per (model, attack).

    Args:
        records: Dicts with ``attack``, ``eps`` and ``accuracy`` (a fraction);
            optionally ``model`` (or ``target``) naming the evaluated model,
            and ``threat_model`` / ``source`` (a transfer attack gets its own
            line, ``"attack (from source)"``). Records at ``eps == 0`` (clean
            accuracy) are allowed.
        title: Optional figure title.

    Returns:
        The `Figure`: one axes, one line per ``"model / attack"`` with the
        accuracies in percent at increasing eps.
    """
    records = _nonempty(records)
    for record in records:
        missing = [k for k in ("attack", "eps", "accuracy") if k not in record]
        if missing:
            raise ValueError(
                f"Each record needs 'attack', 'eps' and 'accuracy'. Received a record "
                f"without {missing}: {record!r}"
            )

    def label(record):
        model = record.get("model", record.get("target"))
        attack = str(record["attack"])
        if record.get("threat_model") == "transfer":  # not on the white-box line
            attack += f" (from {record.get('source', 'source')})"
        return f"{model} / {attack}" if model else attack

    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    ax = fig.subplots()
    for name, group in _group(records, label).items():
        group = sorted(group, key=lambda r: float(r["eps"]))
        ax.plot([float(r["eps"]) for r in group],
                [100.0 * float(r["accuracy"]) for r in group], marker="o", label=name)
    _accuracy_axes(ax, "eps (L-inf, [0, 1] pixel scale)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_eps(records, path, title=None):
    """Writes `accuracy_vs_eps_figure` to ``path``; returns ``path``."""
    return _save(accuracy_vs_eps_figure(records, title), path)

"""One runner per analysis command: settings in, result files out.

Each ``run_<command>(settings, out, progress=None)`` takes the command's
settings dataclass (`atalp_keras.analysis.settings`), writes its figures and
tables into the folder ``out`` and returns a `RunResult`. Nothing here reads
flags or prints; ``progress(message)`` receives the progress lines.
"""

import csv
import dataclasses
import os

import numpy as np

from atalp_keras import artifacts, plots
from atalp_keras.analysis import inputs
from atalp_keras.analysis.attention import attention_maps
from atalp_keras.analysis.iterations import robust_accuracy_vs_iterations
from atalp_keras.analysis.key_regions import (fit_to_model, key_region_activation,
                                              key_region_table, read_key_region_folders)
from atalp_keras.analysis.landscape import centred_grid, loss_landscape
from atalp_keras.attacks import PGDAttack
from atalp_keras.errors import UsageError


@dataclasses.dataclass
class RunResult:
    """The files a runner wrote and the text it would show (may be empty)."""

    paths: list
    summary: str = ""


def _silent(message):
    del message


def _write_json(out, name, obj):
    path = os.path.join(out, name)
    artifacts.write_json(path, obj)
    return path


def _data(settings, models, attackers, limit):
    """The analysed models' test split; every model and attacker must take it."""
    source = inputs.resolve_data(models, settings.dataset, settings.data_dir,
                                 settings.data_seed, settings.image_size)
    info, x, y, class_names = inputs.load_test_split(source, limit)
    inputs.check_input_shapes(list(models) + list(attackers), x, source)
    return source, info, x, y, class_names


def _predict(model, x, batch_size):
    del batch_size  # One call, as before; batched once attacks.batching lands.
    return np.argmax(np.asarray(model(x, training=False)), -1)


def _pgd(settings, eps):
    return PGDAttack(eps, step_size=settings.step_size, num_steps=settings.num_steps,
                     random_start=settings.random_start, seed=settings.seed)


# ----------------------------------------------------------------- attention


def _attention_panel(settings, model, x, y, x_adv, progress):
    stages = inputs.stage_names(model, settings.stage_layers)
    maps = attention_maps(model.model, x, stages, settings.batch_size)
    maps_adv = attention_maps(model.model, x_adv, stages, settings.batch_size)
    pred = _predict(model.model, x, settings.batch_size)
    pred_adv = _predict(model.model, x_adv, settings.batch_size)
    progress(f"{model.name}: clean correct {int(np.sum(pred == y))}/{len(y)}, "
             f"adversarial correct {int(np.sum(pred_adv == y))}/{len(y)}")
    return {"name": model.name, "images_adv": x_adv, "stage_names": stages,
            "maps": maps, "maps_adv": maps_adv, "pred": pred, "pred_adv": pred_adv}


def run_attention(settings, out, progress=None):
    """Figures 1 and 4: attention maps of clean and PGD images per stage.

    Args:
        settings: `AttentionSettings`.
        out: Existing folder for ``attention.png`` and ``attention.json``.
        progress: Optional callable receiving progress lines.
    """
    progress = progress or _silent
    eps = settings.attack_eps
    inputs.check_exists(settings.models, "models")
    if settings.source_model:
        inputs.check_exists(settings.source_model, "source_model")
    models = [inputs.load_model(p, "models", need_stages=True) for p in settings.models]
    for model in models:
        inputs.stage_names(model, settings.stage_layers)  # Fails before any work.
    source = (inputs.load_model(settings.source_model, "source_model")
              if settings.source_model else None)
    data, info, x, y, class_names = _data(settings, models, [source] if source else [],
                                          settings.num_images)
    attack = _pgd(settings, eps)
    shared_adv = None
    if source is not None:
        progress(f"PGD-{settings.num_steps} eps={eps:.4g} on {source.name}")
        shared_adv = attack.perturb(source.model, x, y, batch_size=settings.batch_size)
    panels = []
    for model in models:
        x_adv = shared_adv
        if x_adv is None:
            progress(f"PGD-{settings.num_steps} eps={eps:.4g} on {model.name} (white box)")
            x_adv = attack.perturb(model.model, x, y, batch_size=settings.batch_size)
        panels.append(_attention_panel(settings, model, x, y, x_adv, progress))
    made_on = source.name if source is not None else "each model"
    title = (f"{info.name}: PGD-{settings.num_steps}, eps={eps:.4g}, "
             f"step={attack.step_size:.4g}, adversarials made on {made_on}")
    png = plots.plot_attention_grid(x, panels, os.path.join(out, "attention.png"),
                                    labels=y, class_names=class_names, title=title)
    summary = [{"model": p["name"], "stage_layers": p["stage_names"],
                "pred": p["pred"].tolist(), "pred_adv": p["pred_adv"].tolist()}
               for p in panels]
    json_path = _write_json(out, "attention.json", {
        "dataset": info.name, "data": data.describe(), "labels": y.tolist(),
        "attack": attack.describe(), "attack_seed": settings.seed,
        "adversarials_made_on": made_on, "models": summary})
    return RunResult([png, json_path])


# ------------------------------------------------------- accuracy vs. k steps


def _write_csv(path, records):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


def run_iterations(settings, out, progress=None):
    """Figure 3: accuracy of ``settings.model`` against PGD-k, white box or
    transferred from ``settings.source_models``.

    Args:
        settings: `IterationsSettings`.
        out: Existing folder for ``iterations.{png,csv,json}``.
        progress: Optional callable receiving progress lines.
    """
    progress = progress or _silent
    inputs.check_exists(settings.model, "model")
    inputs.check_exists(settings.source_models, "source_models")
    target = inputs.load_model(settings.model, "model")
    sources = [inputs.load_model(p, "source_models") for p in settings.source_models]
    labels = settings.source_labels or [s.name for s in sources]
    data, info, x, y, _ = _data(settings, [target], sources, settings.num_examples)
    runs = [(label, s.model) for label, s in zip(labels, sources)]
    if settings.white_box or not sources:
        runs.insert(0, (target.name, None))
    records = []
    for label, source in runs:
        progress(f"PGD to {settings.iterations[-1]} steps on {label}, evaluated on "
                 f"{target.name}, {len(x)} examples")
        records += robust_accuracy_vs_iterations(
            target.model, x, y, settings.eps_values, iterations=settings.iterations,
            step_size=settings.pgd_step_size, source=source, seed=settings.seed,
            random_start=settings.random_start, restarts=settings.restarts,
            batch_size=settings.batch_size, target_name=target.name,
            source_name=label, progress=progress)
    for record in records:
        record["dataset"] = info.name
    json_path = _write_json(out, "iterations.json", records)
    csv_path = _write_csv(os.path.join(out, "iterations.csv"), records)
    png = plots.plot_accuracy_vs_iterations(
        records, os.path.join(out, "iterations.png"),
        title=f"{info.name}: accuracy of {target.name} against PGD-k (n={len(x)})")
    lines = [f"eps={r['eps']:.4g} k={r['num_steps']:>4} {r['setting']:>8} "
             f"source={r['source']}: accuracy {100 * r['accuracy']:.1f}%" for r in records]
    return RunResult([png, csv_path, json_path], "\n".join(lines) + "\n")


# ----------------------------------------------------------------- landscape


def run_landscape(settings, out, progress=None):
    """Figure 6: mean cross-entropy around test images, per model.

    Args:
        settings: `LandscapeSettings`.
        out: Existing folder for ``landscape.{png,npz,json}``.
        progress: Optional callable receiving progress lines.
    """
    progress = progress or _silent
    inputs.check_exists(settings.models, "models")
    grid = centred_grid(settings.eps_max, settings.grid_points)
    models = [inputs.load_model(p, "models") for p in settings.models]
    data, info, x, y, _ = _data(settings, models, [], settings.num_images)
    landscapes, summary, arrays = {}, [], {"grid": grid}
    centre = len(grid) // 2 if len(grid) % 2 else None
    for model in models:
        progress(f"{model.name}: loss on a {len(grid)}x{len(grid)} grid, {len(x)} images")
        a, b, z = loss_landscape(model.model, x, y, grid=grid, seed=settings.seed,
                                 batch_size=settings.batch_size)
        landscapes[model.name] = (a, b, z)
        arrays[f"z_{model.name}"] = z
        summary.append({"model": model.name, "loss_min": float(z.min()),
                        "loss_max": float(z.max()),
                        "loss_at_clean": None if centre is None else float(z[centre, centre])})
    png = plots.plot_loss_landscape(
        landscapes, os.path.join(out, "landscape.png"), kind=settings.landscape_kind,
        title=f"{info.name}: mean CE over {len(x)} images, eps_max={settings.eps_max:.4g}")
    npz = os.path.join(out, "landscape.npz")
    np.savez(npz, **arrays)
    json_path = _write_json(out, "landscape.json", {
        "dataset": info.name, "data": data.describe(), "num_images": int(len(x)),
        "direction_seed": settings.seed, "eps_max": settings.eps_max,
        "grid_points": len(grid), "models": summary})
    return RunResult([png, npz, json_path])


# ----------------------------------------------------------------- key regions


def _key_region_adversarials(settings, model, attacker, x):
    """PGD images made on ``attacker`` against its own predictions (the
    key-region folder has no labels)."""
    if tuple(attacker.input_shape) != tuple(x.shape[1:]):
        raise UsageError(
            f"--source_model expects images of shape {tuple(attacker.input_shape)} "
            f"but {model.name} takes {tuple(x.shape[1:])}.")
    attack = _pgd(settings, settings.attack_eps)
    labels = _predict(attacker.model, x, settings.batch_size).astype(np.int32)
    return attack.perturb(attacker.model, x, labels, batch_size=settings.batch_size), attack


def run_key_regions(settings, out, progress=None):
    """Table 3: mean attention inside annotated key regions, per stage; with
    an eps also on PGD images.

    Args:
        settings: `KeyRegionsSettings`.
        out: Existing folder for ``key_regions.md`` and ``key_regions.json``.
        progress: Optional callable receiving progress lines.
    """
    progress = progress or _silent
    inputs.check_exists(settings.models, "models")
    if settings.source_model:
        inputs.check_exists(settings.source_model, "source_model")
    names, images, masks = read_key_region_folders(settings.images, settings.masks)
    models = [inputs.load_model(p, "models", need_stages=True) for p in settings.models]
    source = (inputs.load_model(settings.source_model, "source_model")
              if settings.source_model else None)
    rows, attack = [], None
    for model in models:
        x, m = fit_to_model(images, masks, model.input_shape)
        stages = inputs.stage_names(model, settings.stage_layers)
        progress(f"{model.name}: key-region activation on {len(x)} images")
        rows.append((model.name, "clean", key_region_activation(
            model.model, x, m, stages, batch_size=settings.batch_size)))
        if settings.attack_eps is not None:
            x_adv, attack = _key_region_adversarials(settings, model, source or model, x)
            rows.append((model.name, "adversarial", key_region_activation(
                model.model, x_adv, m, stages, batch_size=settings.batch_size)))
    note = ""
    if attack is not None:
        made_on = source.name if source is not None else "each model"
        note = (f"; adversarial = PGD-{attack.num_steps}, eps={attack.eps:.4g}, "
                f"made on {made_on} against its own predictions")
    table = key_region_table(rows, len(names), note)
    md_path = os.path.join(out, "key_regions.md")
    artifacts.atomic_write_text(md_path, table)
    json_path = _write_json(out, "key_regions.json", {
        "images": names, "attack": attack.describe() if attack is not None else None,
        "activation": [{"model": n, "input": k, "stages": v} for n, k, v in rows]})
    return RunResult([md_path, json_path], table)


RUNNERS = {
    "attention": run_attention,
    "iterations": run_iterations,
    "landscape": run_landscape,
    "key_regions": run_key_regions,
}

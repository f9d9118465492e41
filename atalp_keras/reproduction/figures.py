"""The report's figures: attention maps per stage (clean vs adversarial),
accuracy against PGD iterations (white/gray/black box), loss landscapes and
accuracy against eps."""

import os

import numpy as np

from atalp_keras.reproduction.common import fmt_eps, save_json


def _first_models(s, entries):
    first = {}
    for entry in entries:
        first.setdefault(entry["method"], entry)
    return {m: e for m, e in first.items() if s.in_figures(m)}


def attention_figure(s, info, x, y, first):
    import keras

    from atalp_keras import analysis, evaluation, plots
    from atalp_keras.attacks import PGDAttack
    from atalp_keras.features import resolve_stage_layers

    k = min(s.attention_images, len(x))
    attack = PGDAttack(s.eps, num_steps=20, seed=s.attack_seed)
    panels = []
    for method, entry in first.items():
        model, _ = evaluation.load_model_for_eval(entry["dir"])
        x_adv = attack.perturb(model, x[:k], y[:k], batch_size=s.eval_batch_size)
        panels.append({
            "name": method, "images_adv": x_adv, "stage_names": resolve_stage_layers(model),
            "maps": analysis.attention_maps(model, x[:k]),
            "maps_adv": analysis.attention_maps(model, x_adv),
            "pred": np.argmax(np.asarray(model(x[:k], training=False)), -1),
            "pred_adv": np.argmax(np.asarray(model(x_adv, training=False)), -1)})
        keras.backend.clear_session()
    return plots.plot_attention_grid(
        x[:k], panels, os.path.join(s.figures_dir, "attention.png"), labels=y[:k],
        class_names=info.class_names,
        title=(f"{info.name}: white-box PGD-20 at eps {fmt_eps(s.eps)} (step "
               f"{attack.step_size:.4g}), first seed of each method"))


def iteration_figures(s, info, agg, methods, n):
    from atalp_keras import plots

    figures = {}
    black = s.blackbox_model + (f", {s.blackbox_method}" if s.blackbox_method else "")
    for threat, title in (("white", "white-box"), ("gray", "gray-box (same arch., other seed)"),
                          ("black", f"black-box (source: {black})")):
        records = []
        for method in methods:
            for eps in s.eval_eps:
                for it in s.iterations:
                    stat = agg[method].get((f"{threat}@{it}", eps))
                    if stat is None or not stat.values:
                        continue
                    records.append({"eps": eps, "num_steps": it, "accuracy": stat.mean,
                                    "step_size": s.iter_step_size,
                                    "setting": "white" if threat == "white" else "transfer",
                                    "source": method if threat == "white" else threat,
                                    "target": method})
        if records:
            figures[f"iterations_{threat}"] = plots.plot_accuracy_vs_iterations(
                records, os.path.join(s.figures_dir, f"iterations_{threat}.png"),
                title=f"{info.name}: {title} PGD, mean over seeds, n={n}")
    return figures


def landscape_figure(s, info, x, y, first):
    import keras

    from atalp_keras import analysis, evaluation, plots

    m = min(s.landscape_images, len(x))
    grid = np.linspace(-max(s.eval_eps), max(s.eval_eps), s.landscape_points)
    if s.landscape_points % 2:
        grid[s.landscape_points // 2] = 0.0
    landscapes = {}
    for method, entry in first.items():
        model, _ = evaluation.load_model_for_eval(entry["dir"])
        landscapes[method] = analysis.loss_landscape(model, x[:m], y[:m], grid=grid,
                                                     seed=s.attack_seed,
                                                     batch_size=s.eval_batch_size)
        keras.backend.clear_session()
    save_json(os.path.join(s.out_for(s.eps), "landscapes.json"),
              {name: {"a": a, "b": b, "z": z} for name, (a, b, z) in landscapes.items()})
    return plots.plot_loss_landscape(
        landscapes, os.path.join(s.figures_dir, "landscape.png"), kind="surface",
        title=f"{info.name}: mean CE over {m} test images, a along sign(grad), b Rademacher")


def eps_figure(s, info, agg, methods, n):
    from atalp_keras import plots

    records = []
    for method in methods:
        clean = agg[method].get(("clean", s.eval_eps[0]))
        if clean is not None:
            records.append({"model": method, "attack": f"PGD-{s.pgd_steps}", "eps": 0.0,
                            "accuracy": clean.mean})
        for eps in sorted(set(s.curve_eps) | set(s.eval_eps)):
            stat = agg[method].get(("pgd1", eps))
            if stat is not None and stat.values:
                records.append({"model": method, "attack": f"PGD-{s.pgd_steps}", "eps": eps,
                                "accuracy": stat.mean})
    if not records:
        return None
    return plots.plot_accuracy_vs_eps(
        records, os.path.join(s.figures_dir, "accuracy_vs_eps.png"),
        title=f"{info.name}: white-box PGD-{s.pgd_steps} (1 restart), mean over seeds, n={n}")


def make_figures(s, info, x, y, entries, agg):
    """Writes the PNGs of the main run; returns ``{name: path}``."""
    os.makedirs(s.figures_dir, exist_ok=True)
    first = _first_models(s, entries)
    figures = {"attention": attention_figure(s, info, x, y, first)}
    figures.update(iteration_figures(s, info, agg, list(first), len(y)))
    figures["landscape"] = landscape_figure(s, info, x, y, first)
    if s.curve_eps:
        path = eps_figure(s, info, agg, list(agg), len(y))
        if path:
            figures["accuracy_vs_eps"] = path
    return figures

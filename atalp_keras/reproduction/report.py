"""The Markdown report: tables built from the measured numbers, filled into
the templates in ``templates/`` (the prose lives there, not here)."""

import dataclasses
import os
import platform
import string

import numpy as np

from atalp_keras.reproduction import discussion, presets
from atalp_keras.reproduction.common import fmt_eps, fmt_weight
from atalp_keras.reproduction.stats import Stat, compare, points, seconds_cell

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
COLUMNS = ("clean", "fgsm", "pgd", "autoattack", "square", "rays", "worst-case")


def fill(name, **values):
    """``templates/<name>.md`` with its ``${placeholders}`` filled."""
    with open(os.path.join(TEMPLATES, f"{name}.md")) as handle:
        return string.Template(handle.read()).substitute(values)


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def aggregate(values_by_model, methods, n):
    """``{method: {(metric, eps): Stat}}`` from ``[(method, values)]``."""
    table = {}
    for method in methods:
        per_seed = [v for m, v in values_by_model if m == method]
        # First-seen order, not a set's: summary.json then reads the same
        # from one invocation to the next (a set's order follows str hashing).
        keys = dict.fromkeys(key for values in per_seed for key in values)
        table[method] = {key: Stat([v[key] for v in per_seed if key in v], n) for key in keys}
    return table


def machine_info():
    import keras
    import tensorflow as tf

    cpu = "unknown"
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle
                     if line.startswith("model name")]
        cpu = names[0] if names else cpu
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "gpus": gpus or ["none"],
            "versions": versions}


def run_facts(s, run, machine):
    ledger, timings = run["ledger"], run["timings"]
    trained, reused = ledger.get("trained", 0), ledger.get("reused", 0)
    evaluated, eval_reused = ledger.get("evaluated", 0), ledger.get("eval_reused", 0)
    outs = ", ".join(f"`{s.out_for(e)}`" for e in [s.eps] + list(s.also_eps))
    return "\n".join([
        f"- Date: {run['started_at']}; this invocation took {run['total'] / 60:.1f} min ("
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()) + ")",
        f"- Compute behind the numbers (summed from the per-model files, whichever invocation "
        f"made them): training {ledger.get('train_seconds', 0.0) / 60:.1f} min for "
        f"{trained + reused} models ({reused} reused), evaluation "
        f"{ledger.get('eval_seconds', 0.0) / 60:.1f} min for {evaluated + eval_reused} models "
        f"({eval_reused} reused)",
        f"- Machine: {machine['nproc']} CPU cores ({machine['cpu']}), GPUs: "
        f"{', '.join(machine['gpus'])}; load average {run['load'][0]:.1f} at the start and "
        f"{run['load'][1]:.1f} at the end (other jobs share these cores: times are upper bounds)",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + f"; git commit `{run['commit']}`",
        f"- Outputs: {outs} (models, `eval/*.json` per model, `sweep.json`, `summary.json`), "
        f"figures in `{s.figures_dir}`"])


def _sources_cell(s):
    names = discussion.code_list
    if not s.transfer:
        return "none (`--notransfer`: white-box evaluation only)"
    sourced = [m for m in s.methods if s.has_sources(m)]
    from_main = [m for m in sourced if s.gray_from_main(m)]
    trained = [m for m in sourced if not s.gray_from_main(m)]
    gray = ([f"another main seed's model for {names(from_main)} (each seed attacked from "
             "the next one, the last from the first)"] if from_main else [])
    gray += [f"seed {s.source_seed} for {names(trained)}"] if trained else []
    black = (f"one `{s.blackbox_method}` model for every method" if s.blackbox_method
             else "same method")
    return (f"gray box: same architecture and method, {'; '.join(gray)}; black box: "
            f"`{s.blackbox_model}`, {black}, seed {s.source_seed}; for {names(sourced)}")


def settings_table(s, info, n):
    r = s.recipe
    seeds = "; ".join(f"{m}: {', '.join(map(str, s.seeds_of(m)))}" for m in s.methods)
    rows = [
        ["data", f"`{r['dataset']}` ({info.name}): {info.num_train} training images, {n} test "
                 f"images attacked, {info.num_classes} classes, shape {tuple(info.input_shape)}"],
        ["main models", f"`{r['model']}`, seeds {seeds}"],
        ["sources", _sources_cell(s)],
        ["training recipe (TrainConfig, all models)",
         ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("dataset", "model"))],
        ["further radii", ", ".join(f"eps {fmt_eps(e)}: "
                                    + discussion.code_list(s.also_eps_methods, "")
                                    for e in s.also_eps) or "none"],
        ["evaluation radii", ", ".join(fmt_eps(e) for e in s.eval_eps)],
    ]
    return md_table(["setting", "value"], rows)


def attack_settings(s, num_classes):
    t = max(1, min(9, num_classes - 1))
    aa = (f"APGD-CE (100 steps), APGD-T ({t} targets x 100 steps), FAB-T ({t} targets x 100 "
          "steps), Square (5000 queries)" if s.autoattack == "standard"
          else f"APGD-CE (100 steps), APGD-T ({t} targets x 100 steps)")
    lines = [
        "FGSM: one signed-gradient step of size eps, no random start",
        f"PGD-{s.pgd_steps}x{s.pgd_restarts}: {s.pgd_steps} steps of {2.5 / s.pgd_steps:g}*eps, "
        f"random start, {s.pgd_restarts} restarts (worst per image)",
        f"AutoAttack {s.autoattack}: {aa}",
        f"RayS: hard-label, {s.rays_queries} queries per image, early stop at eps",
        f"gray/black box: PGD-k with step {fmt_eps(s.iter_step_size)}, random start, 1 restart, "
        "made on the source model and evaluated on the target"]
    if s.square_queries:
        lines.insert(3, f"Square: score-based, {s.square_queries} queries per image")
    return "\n".join(f"- {line}" for line in lines)


def results_tables(s, agg, methods, eval_eps, n, kmax):
    blocks = []
    for eps in eval_eps:
        keys = [c for c in COLUMNS + (f"gray@{kmax}", f"black@{kmax}")
                if any((c, eps) in agg[m] for m in methods)]
        header = ["method"] + [k.replace("@", " PGD-") for k in keys]
        if any(("clean_all", eps) in agg[m] for m in methods):
            header.insert(1, "clean (all test)")
        rows = []
        for m in methods:
            cells = [agg[m].get((k, eps), Stat([], n)).cell(interval=True) for k in keys]
            if len(header) > len(keys) + 1:
                cells.insert(0, agg[m].get(("clean_all", eps), Stat([], 1)).cell())
            rows.append([f"`{m}`"] + cells)
        blocks.append(f"### eps = {fmt_eps(eps)} (n = {n} test images)\n\n"
                      + md_table(header, rows))
    return "\n\n".join(blocks)


def _mean_cell(stat):
    if stat is None or not stat.values:
        return "-"
    return f"{stat.mean:.3f}" + (f" ± {stat.std:.3f}" if stat.std is not None else "")


def distance_table(s, agg, methods, eval_eps):
    rows = [[f"`{m}`"] + [_mean_cell(agg[m].get(("rays_distance", e))) for e in eval_eps]
            for m in methods]
    return md_table(["method"] + [f"eps {fmt_eps(e)}" for e in eval_eps], rows)


def iterations_tables(s, agg, methods, eval_eps, n):
    blocks = []
    for eps in eval_eps:
        rows = [[f"`{m}`", threat] + [agg[m].get((f"{threat}@{k}", eps), Stat([], n)).cell()
                                      for k in s.iterations]
                for m in methods for threat in ("white", "gray", "black")
                if any((f"{threat}@{k}", eps) in agg[m] for k in s.iterations)]
        blocks.append(f"eps = {fmt_eps(eps)}, n = {n}:\n\n"
                      + md_table(["method", "threat"] + [f"k={k}" for k in s.iterations], rows))
    return "\n\n".join(blocks)


def training_table(runs):
    rows = []
    for run in runs:
        for method, t in run["training"].items():
            rows.append([f"`{method}`", fmt_eps(run["eps"]), t["weights"],
                         seconds_cell(t["steady"]), seconds_cell(t["first"]),
                         t["clean"].cell()])
    return md_table(["method", "train eps", "loss weights (nat/adv/alp/at/beta)", "s/epoch",
                     "first epoch s", "final clean test %"], rows)


def sweep_section(sweep):
    if not sweep:
        return ""
    rows = [[",".join(map(str, g["stages"])), fmt_weight(g["at_weight"]),
             fmt_weight(g["alp_weight"]), f"{100 * g['val_clean']:.1f}",
             f"{100 * g['val_robust']:.1f}", g["val_n"],
             "**chosen**" if (g["at_weight"], g["alp_weight"]) == (
                 sweep["chosen"]["at_weight"], sweep["chosen"]["alp_weight"]) else ""]
            for g in sweep["grid"]]
    return fill("sweep", train_examples=sweep["train_examples"], epochs=sweep["epochs"],
                val_examples=sweep["val_examples"], val_scored=sweep["val_scored"],
                seed=sweep["seed"], criterion=sweep["criterion"],
                preset_alp=fmt_weight(sweep["preset"]["alp_weight"]),
                grid_table=md_table(["stage", "at_weight", "alp_weight", "val clean %",
                                     "val PGD-20 %", "n", ""], rows),
                at_weight=fmt_weight(sweep["chosen"]["at_weight"]),
                alp_weight=fmt_weight(sweep["chosen"]["alp_weight"]))


def _clean_key(values, eps):
    """Clean accuracy on all test images where measured, else on the attacked ones."""
    return ("clean_all", eps) if ("clean_all", eps) in values else ("clean", eps)


def published_section(s, aggs):
    rows = []
    for p in presets.published(s.preset):
        agg = aggs.get(p["eps"], {}).get(p["method"])
        keys = [_clean_key(agg or {}, p["eps"])] + [(k, p["eps"]) for k in ("autoattack",
                                                                             "worst-case")]
        ours = [agg.get(k, Stat([], 1)).cell() if agg else "-" for k in keys]
        rows.append([fmt_eps(p["eps"]), f"`{p['method']}`", p["source"], f"{p['clean']:.1f}",
                     f"{p['robust']:.1f} ({p['robust_note']})"] + ours)
    if not rows:
        return ""
    return fill("published", model=s.recipe["model"], published_table=md_table(
        ["eps", "method", "published (source)", "their clean %", "their robust %",
         "our clean % (all test images)", "our AutoAttack %", "our worst case %"],
        rows)) + "\n"


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}"


def longer_section(s, main, longer):
    """The --longer_epochs models beside the same method and seed trained for
    the recipe's epochs (``main``: the run dict of the training eps)."""
    if not longer:
        return ""
    eps, rows, lines = main["eps"], [], []
    published = {p["method"]: p for p in presets.published(s.preset) if p["eps"] == eps}
    for row in longer:
        name = f"{row['method']}_seed{row['seed']}"
        entry = next((e for e in main["entries"] if e["name"] == name), {})
        pairs = [(s.recipe["epochs"], main["per_model"].get(name, {}),
                  entry.get("train_seconds")),
                 (row["epochs"], row["values"], row["train_seconds"])]
        for epochs, values, seconds in pairs:
            rows.append([f"`{row['method']}`", row["seed"], epochs,
                         "-" if seconds is None else f"{seconds / 60:.0f}"]
                        + [_pct(values.get(key)) for key in (
                            ("clean_all", eps), ("clean", eps), ("pgd", eps),
                            ("autoattack", eps), ("worst-case", eps))])
        (_, short, _), (_, long, _) = pairs
        text = f"- `{row['method']}` seed {row['seed']}: "
        for label, key in (("clean accuracy on all test images", _clean_key(long, eps)),
                           ("AutoAttack", ("autoattack", eps))):
            if key in short and key in long:
                n = row["n_all"] if key[0] == "clean_all" else main["n"]
                a, b = Stat([long[key]], n), Stat([short[key]], n)
                verdict = "beyond" if compare(a, b) else "within"
                text += (f"{label} {_pct(short[key])}% after {s.recipe['epochs']} epochs, "
                         f"{_pct(long[key])}% after {row['epochs']} ({points(a, b)}, "
                         f"{verdict} the test-sample noise at n={n}); ")
        p = published.get(row["method"])
        values = [v for v in row["test_curve"] if v is not None]
        gap = None
        if p and _clean_key(long, eps) in long:
            gap = p["clean"] - 100 * long[_clean_key(long, eps)]
            text += (f"published clean {p['clean']:.1f}%: "
                     + (f"{gap:.1f} points short after {row['epochs']} epochs"
                        if gap > 0 else f"reached ({-gap:.1f} points above)") + "; ")
        if gap is not None and gap > 0 and len(values) >= 3:
            moved = 100 * (values[-1] - values[-3])
            text += f"over its last three epochs the clean test accuracy moved {moved:+.1f} points"
            text += ("; " if abs(moved) >= 0.5 else
                     " (level: the schedule had run its course), so a wider backbone or a "
                     "schedule longer still are what is left to try; ")
        curve = [f"{100 * v:.1f}" for v in values]
        if curve:
            text += "clean test accuracy after each epoch: " + ", ".join(curve) + "."
        lines.append(text.rstrip("; "))
    return fill("longer", epochs=s.recipe["epochs"], longer_epochs=s.longer_epochs,
                methods=discussion.code_list(s.longer_methods), eps=fmt_eps(eps),
                longer_table=md_table(["method", "seed", "epochs", "training min",
                                       "clean (all test) %", f"clean (n={main['n']}) %",
                                       "PGD %", "AutoAttack %", "worst case %"], rows),
                longer_text="\n".join(lines)) + "\n"


def figures_section(s, figures):
    report_dir = os.path.dirname(os.path.abspath(s.report))
    lines = []
    for key, path in figures.items():
        rel = os.path.relpath(os.path.abspath(path), report_dir)
        lines.append(f"**{discussion.caption(s, key)}** (`{rel}`)\n\n![{key}]({rel})\n")
    return "\n".join(lines)


def missing_from_plan(s):
    """What the preset's plan (with the same ``--quick``) has and ``s`` drops:
    a list of phrases, empty for a full run."""
    full = presets.resolve(s.preset, s.quick)
    missing = []
    methods = [m for m in full.methods if m not in s.methods]
    if methods:
        missing.append("the methods " + discussion.code_list(methods))
    seeds = sorted({seed for m in s.methods for seed in full.seeds_of(m)
                    if seed not in s.seeds_of(m)})
    if seeds:
        missing.append("seeds " + ", ".join(map(str, seeds)))
    radii = [e for e in full.also_eps if e not in s.also_eps]
    if radii:
        missing.append("the training radii " + ", ".join(f"eps {fmt_eps(e)}" for e in radii))
    at_radii = [m for m in full.also_eps_methods if m not in s.also_eps_methods]
    if at_radii and s.also_eps:
        missing.append(discussion.code_list(at_radii) + " at "
                       + ", ".join(f"eps {fmt_eps(e)}" for e in s.also_eps))
    dropped = [m for m in full.longer_methods if m not in s.longer_methods]
    if full.longer_epochs and (s.longer_epochs < full.longer_epochs or dropped):
        missing.append(f"the {full.longer_epochs}-epoch model of "
                       + discussion.code_list(full.longer_methods))
    if full.transfer and not s.transfer:
        missing.append("the gray/black-box transfer attacks")
    elif full.transfer:
        unsourced = [m for m in s.methods if full.has_sources(m) and not s.has_sources(m)]
        if unsourced:
            missing.append("the gray/black-box transfer attacks on "
                           + discussion.code_list(unsourced))
    shown = lambda v: "all" if v == float("inf") else v  # noqa: E731
    smaller = [f"{name} {shown(mine)} (plan: {shown(planned)})"
               for name, mine, planned in _budgets(s, full) if mine < planned]
    from atalp_keras.reproduction.pipeline import needs_sweep  # (pipeline imports this module)

    if full.sweep and needs_sweep(dataclasses.replace(s, sweep=True)):
        if not s.sweep:
            smaller.append("no AT/ALP weight sweep (plan: a sweep)")
        for name in ("at_weights", "alp_weights"):
            dropped = sorted(set(getattr(full, name)) - set(getattr(s, name)))
            if s.sweep and dropped:
                smaller.append(f"{name} without {', '.join(f'{w:g}' for w in dropped)}")
    if full.autoattack == "standard" and s.autoattack != "standard":
        smaller.append(f"AutoAttack {s.autoattack} (plan: standard)")
    if smaller:
        missing.append("smaller budgets: " + ", ".join(smaller))
    return missing


# Budgets a run can shrink: (name, of the settings (or "recipe:" its
# TrainConfig field)); 0 means "all" where the setting says so, and the
# recipe's epochs for sweep_epochs.
_BUDGETS = ("recipe:epochs", "num_test", "pgd_steps", "pgd_restarts", "square_queries",
            "rays_queries", "sweep_epochs", "sweep_train_examples", "max_val_examples")
_ZERO_IS_ALL = ("num_test", "sweep_train_examples", "max_val_examples")


def _budgets(s, full):
    """``(name, this run's, the plan's)`` per budget, "all" as infinity."""
    for name in _BUDGETS:
        if name.startswith("recipe:"):
            name = name[len("recipe:"):]
            mine, planned = s.recipe.get(name), full.recipe.get(name)
        else:
            mine, planned = getattr(s, name), getattr(full, name)
        if mine is None or planned is None:
            continue
        if name == "sweep_epochs":  # 0: the recipe's epochs
            mine = mine or s.recipe.get("epochs") or 0
            planned = planned or full.recipe.get("epochs") or 0
        elif name in _ZERO_IS_ALL:
            mine, planned = (v or float("inf") for v in (mine, planned))
        yield name, mine, planned


def partial_note(s, missing=None):
    """The report's partial-run note (empty for a full run); ``missing``:
    `missing_from_plan` of ``s`` when the caller has it already."""
    missing = missing_from_plan(s) if missing is None else missing
    if not missing:
        return ""
    command = f"python experiments/reproduce.py --preset={s.preset}" + (
        " --quick" if s.quick else "")
    return fill("partial", preset=s.preset, missing="; ".join(missing), full_command=command)


def write_report(s, info, runs, figures, sweep, argv, machine):
    """Fills templates/report.md; ``runs``: one dict per training radius."""
    main = runs[0]
    n, kmax = main["n"], s.iterations[-1]
    aggs = {run["eps"]: run["agg"] for run in runs}
    tables = []
    for run in runs:
        eval_eps = s.eval_eps if run is main else (run["eps"],)
        tables.append(results_tables(s, run["agg"], list(run["agg"]), eval_eps, run["n"], kmax))
    missing = missing_from_plan(s)
    title = "AT+ALP reproduction report" + (" (QUICK VARIANT)" if s.quick else "") + (
        " (PARTIAL)" if missing else "")
    text = fill(
        "report", title=title,
        quick_note=(fill("quick") if s.quick else "") + partial_note(s, missing),
        command=" ".join(argv),
        run_facts=run_facts(s, main, machine), settings_table=settings_table(s, info, n),
        sweep_section=sweep_section(sweep), training_table=training_table(runs),
        attack_settings=attack_settings(s, info.num_classes), results_tables="\n\n".join(tables),
        distance_table=distance_table(s, main["agg"], list(main["agg"]), s.eval_eps),
        iterations_tables=iterations_tables(s, main["agg"], list(main["agg"]), s.eval_eps, n),
        published_section=published_section(s, aggs),
        longer_section=longer_section(s, main, main.get("longer")),
        audit_section=discussion.audit_section(runs), figures=figures_section(s, figures),
        discussion="\n\n".join(discussion.paragraphs(s, runs, sweep)))
    folder = os.path.dirname(s.report)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(s.report, "w") as handle:
        handle.write(text)
    return s.report

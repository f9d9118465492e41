"""The per-model evaluation suite, cached per model and per attack.

Each main model's results live in ``<out>/eval/<name>.json``, rewritten after
every finished part (one attack at one eps, one transfer curve, the eps curve,
the clean accuracy on all test images, the audit). A part whose settings are
unchanged is reused, so a rerun (or a killed run) redoes only missing work.
"""

import json
import os
import time

import numpy as np

from atalp_keras.reproduction.common import count, fmt_eps, load_json, log, save_json

WORST_CASE = "worst-case"
# Part of the audit's cache key: raised when the audit's verdicts change for the
# same inputs, so cached audits are redone (2: standard AutoAttack enters the
# gradient-free comparison by its gradient stages, not with Square; 3: the
# single_step_vs_clean check).
AUDIT_REVISION = 3


def suite_requests(s, num_classes):
    """``[(label, registry name, options, queries)]`` of the white-box suite."""
    aa_name = "autoattack" if s.autoattack == "standard" else "autoattack-fast"
    requests = [("fgsm", "fgsm", {}, None),
                ("pgd", "pgd", {"num_steps": s.pgd_steps, "restarts": s.pgd_restarts}, None),
                ("autoattack", aa_name, {"n_target_classes": max(1, min(9, num_classes - 1))},
                 None)]
    if s.square_queries:
        requests.append(("square", "square", {}, s.square_queries))
    requests.append(("rays", "rays", {}, s.rays_queries))
    return requests


def _predicted(model, x, batch_size):
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return np.argmax(np.asarray(logits), -1)


def state_file(entry, key):
    """Where the part ``key`` of ``entry`` keeps its progress while it runs
    (AutoAttack's stages); removed once the part is in the JSON."""
    return os.path.join(entry["out"], "eval", f"{entry['name']}.{key}.state.npz")


def _attack_part(s, model, x, y, name, options, queries, eps, resume_file):
    from atalp_keras import evaluation
    from atalp_keras.evaluation.run import attack_seconds

    if name.startswith("autoattack"):
        options = dict(options, resume_file=resume_file)
    attack = evaluation.build_attacks([(name, options)], [eps], queries=queries,
                                      seed=s.attack_seed)[0]
    started = time.time()
    log(f"{name} at eps {fmt_eps(eps)} on {len(y)} images")
    # verbose: progress on stderr (a line a minute in a log file).
    result = attack.run(model, x, y, batch_size=s.eval_batch_size, verbose=1)
    x_adv = np.asarray(result.x_adv, np.float32)
    correct = _predicted(model, x_adv, s.eval_batch_size) == y
    part = {"attack": name, "eps": float(eps), "n": int(len(y)),
            "accuracy": float(np.mean(correct)), "correct": correct.astype(int).tolist(),
            "seconds": round(time.time() - started, 1),
            "max_perturbation": float(np.max(np.abs(x_adv - x))),
            "min_pixel": float(np.min(x_adv)), "max_pixel": float(np.max(x_adv)),
            "settings": json.loads(json.dumps(attack.describe(), default=str))}
    if result.extras.get("mean_distance") is not None:
        part["mean_distance"] = float(result.extras["mean_distance"])
    if result.extras.get("report") is not None:
        part["stages"] = json.loads(json.dumps(result.extras["report"], default=str))
        part["seconds"] = round(attack_seconds(part["seconds"], part["stages"]), 1)
    return part


def _correct(model, x, y, batch_size):
    correct = _predicted(model, x, batch_size) == y
    return {"accuracy": float(np.mean(correct)), "n": int(len(y)),
            "correct": correct.astype(int).tolist()}


def audit_records(stored):
    """Evaluation-style records of the finished attack parts (for the audit;
    AutoAttack's ``stages`` let it separate the gradient stages from Square)."""
    keys = ("attack", "eps", "n", "accuracy", "max_perturbation", "min_pixel", "max_pixel",
            "stages")
    return [{k: p["value"][k] for k in keys if k in p["value"]}
            for key, p in stored.items() if "@" in key]


def _parts(s, entry, x, y, sources, info, full_test, stored):
    """``{part key: (settings key, compute())}`` of one model's evaluation."""
    from atalp_keras import analysis, audit, evaluation

    model_box = {}

    def model():
        if "m" not in model_box:
            model_box["m"] = evaluation.load_model_for_eval(entry["dir"])[0]
        return model_box["m"]

    eval_eps = entry["eval_eps"]
    parts = {"clean": ("n", lambda: _correct(model(), x, y, s.eval_batch_size))}
    if full_test is not None:
        parts["clean_all"] = ("all", lambda: _correct(model(), *full_test, s.eval_batch_size))
    for label, name, options, queries in suite_requests(s, info.num_classes):
        for eps in eval_eps:
            key = f"{label}@{eps!r}"
            parts[key] = (
                [name, options, queries, s.attack_seed],
                lambda n=name, o=options, q=queries, e=eps, k=key: _attack_part(
                    s, model(), x, y, n, o, q, e, state_file(entry, k)))
    for threat, (label, source_dir) in [("white", (entry["name"], None))] + list(
            sources.items()):
        # A transfer curve is reused only from the same source (--gray_from_seeds
        # and --blackbox_method change it under the same part key).
        parts[f"iterations:{threat}"] = (
            [list(s.iterations), s.iter_step_size, s.attack_seed, eval_eps]
            + ([] if source_dir is None else [label]),
            lambda t=threat, d=source_dir, lab=label: [dict(r, threat=t) for r in
                                                      analysis.robust_accuracy_vs_iterations(
                model(), x, y, eval_eps, iterations=s.iterations, step_size=s.iter_step_size,
                source=None if d is None else evaluation.load_model_for_eval(d)[0],
                seed=s.attack_seed, restarts=1, batch_size=s.eval_batch_size,
                target_name=entry["name"], source_name=lab)])
    if entry.get("curve_eps"):
        curve = sorted(set(entry["curve_eps"]) | set(eval_eps))
        parts["eps_curve"] = ([curve, s.pgd_steps, s.attack_seed], lambda: [
            r for r in evaluation.evaluate_model(
                model(), x, y, evaluation.build_attacks(
                    [("pgd", {"num_steps": s.pgd_steps, "restarts": 1})], curve,
                    seed=s.attack_seed), batch_size=s.eval_batch_size, verbose=0)
            if r["attack"] == "pgd"])
    if s.audit:
        parts["audit"] = ([eval_eps, s.attack_seed, AUDIT_REVISION], lambda: audit.audit(
            audit_records(stored), model(), x, y, eps=max(eval_eps), num_examples=min(len(y), 1000),
            batch_size=s.eval_batch_size, seed=s.attack_seed))
    return parts


def evaluate_main(s, entry, x, y, sources, info, ledger=None, full_test=None):
    """The full suite on one main model (``entry``: name, method, seed, dir,
    eval_eps, curve_eps); parts already in ``<out>/eval/<name>.json`` with the
    same settings are reused."""
    import keras

    path = os.path.join(entry["out"], "eval", f"{entry['name']}.json")
    result = load_json(path) if os.path.isfile(path) else {}
    if result.get("n") != len(y):
        result = {}
    result.update({k: entry[k] for k in ("name", "method", "seed")})
    result["n"] = int(len(y))
    stored = result.setdefault("parts", {})
    todo = 0
    parts = _parts(s, entry, x, y, sources, info, full_test, stored)
    for key, (settings_key, compute) in parts.items():
        settings_key = json.dumps(settings_key, sort_keys=True, default=str)
        if key in stored and stored[key].get("key") == settings_key:
            continue
        todo += 1
        started = time.time()
        value = compute()
        # A resumed AutoAttack's value counts the stages of earlier runs too.
        seconds = max(time.time() - started, value.get("seconds", 0.0)
                      if isinstance(value, dict) else 0.0)
        stored[key] = {"key": settings_key, "value": value, "seconds": round(seconds, 1)}
        save_json(path, result)
        if os.path.isfile(state_file(entry, key)):
            os.remove(state_file(entry, key))
    result["seconds"] = round(sum(p.get("seconds", 0.0) for p in stored.values()), 1)
    result = save_json(path, result)
    keras.backend.clear_session()
    if not todo:
        log(f"reuse evaluation of {entry['name']}")
        count(ledger, "eval_reused", result["seconds"], "eval_seconds")
    else:
        count(ledger, "evaluated", result["seconds"], "eval_seconds")
        log(f"evaluated {entry['name']} ({todo} parts) in {result['seconds']:.0f} s: "
            + summary_line(result, entry["eval_eps"]))
    return result


def summary_line(result, eval_eps):
    values = per_model_values(result, eval_eps)
    return ", ".join(f"{k} eps {fmt_eps(e)} {100 * v:.1f}%" for (k, e), v in values.items()
                     if k in ("clean", "pgd", "autoattack", WORST_CASE) and e == eval_eps[0])


def gradient_stages(part):
    """`audit.gradient_stages` (imported here: the audit pulls in TensorFlow)."""
    from atalp_keras.evaluation.audit import gradient_stages as stages

    return stages(part)


def per_model_values(result, eval_eps):
    """Flat ``{(metric, eps): accuracy}`` of one evaluated model (the per-image
    worst case over every attack at each eps is computed here)."""
    parts = {k: p["value"] for k, p in result.get("parts", {}).items()}
    values = {}
    for eps in eval_eps:
        values[("clean", eps)] = parts["clean"]["accuracy"]
        if "clean_all" in parts:
            values[("clean_all", eps)] = parts["clean_all"]["accuracy"]
    worst = {}
    clean = np.asarray(parts["clean"]["correct"], bool)
    for key, part in parts.items():
        if "@" not in key:
            continue
        label, eps = key.split("@")[0], float(key.split("@")[1])
        values[(label, eps)] = part["accuracy"]
        worst.setdefault(eps, [clean]).append(np.asarray(part["correct"], bool))
        if "mean_distance" in part:
            values[("rays_distance", eps)] = part["mean_distance"]
        gradient = gradient_stages(part) if label == "autoattack" else None
        if gradient is not None:  # standard AutoAttack before its Square stage
            values[("autoattack_gradient", eps)] = gradient["accuracy"]
    for eps, correct in worst.items():
        if len(correct) > 2:  # the clean input and at least two attacks
            values[(WORST_CASE, eps)] = float(np.mean(np.logical_and.reduce(correct)))
    for key, records in parts.items():
        if key.startswith("iterations:"):
            for r in records:
                values[(f"{r['threat']}@{r['num_steps']}", r["eps"])] = r["accuracy"]
    for r in parts.get("eps_curve", []):
        values[("pgd1", r["eps"])] = r["accuracy"]
    return values

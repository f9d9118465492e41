"""Robust accuracy of a model under a suite of attacks, as records.

Each record: ``model, method, attack, eps, num_steps, step_size, restarts, n,
accuracy, seconds`` plus the attack's other ``describe()`` settings,
``threat_model`` (``white-box``, or ``transfer`` when the examples are made on
a ``source`` model), ``max_perturbation`` (the largest L-inf change actually
made) and ``min_pixel``/``max_pixel`` of the adversarial images, so the audit
can check the eps-ball and the [0, 1] box, and a summary of the attack's
extras (``stages``: AutoAttack's per-stage report; ``mean_queries``;
``mean_distance``: RayS). Clean accuracy is the record with attack ``none``;
with several attacks at one eps, ``worst-case`` counts an example as robust
only if it survives all of them.
"""

import time

import numpy as np

from atalp_keras import attacks as attack_registry
from atalp_keras.attacks.base import Attack, check_attack_inputs
from atalp_keras.attacks.batching import predict_classes
from atalp_keras.evaluation.report import CLEAN, WORST_CASE, format_eps


def _record(base, attack_name, eps, n, correct, seconds, settings=None, extra=None):
    settings = dict(settings or {})
    record = {
        **base,
        "attack": attack_name,
        "eps": float(eps),
        "num_steps": settings.pop("num_steps", None),
        "step_size": settings.pop("step_size", None),
        "restarts": settings.pop("restarts", None),
        "n": int(n),
        "accuracy": float(np.mean(correct)) if n else float("nan"),
        "seconds": round(float(seconds), 3),
        # One character per image, in the order of the evaluated images ('1':
        # classified correctly): every accuracy, interval and paired test
        # recomputes from it (`stats.mcnemar_exact`, `stats.parse_correct`).
        "correct": "".join("1" if c else "0" for c in np.asarray(correct, bool)),
    }
    record.update(settings)
    record.update(extra or {})
    return record


def attack_seconds(wall, stages=None):
    """An attack's compute time: its wall time, or for an AutoAttack resumed
    from its file the sum of its stages' seconds (those of the earlier,
    killed calls included) when that is larger."""
    if not stages:
        return float(wall)
    return max(float(wall), sum(float(stage["seconds"]) for stage in stages))


def summarize_extras(extras):
    """The JSON-sized part of an `AttackResult`'s extras (no per-example arrays)."""
    summary = {}
    if "report" in extras:
        summary["stages"] = [dict(stage, seconds=round(float(stage["seconds"]), 3))
                             for stage in extras["report"]]
    if "queries" in extras:
        summary["mean_queries"] = float(np.mean(extras["queries"]))
    if "mean_distance" in extras:
        summary["mean_distance"] = float(extras["mean_distance"])
    return summary


def _as_attack(item):
    """An `Attack`, or None for the clean entry."""
    if item is None or item == CLEAN or (isinstance(item, tuple) and item[0] == CLEAN):
        return None
    return item if isinstance(item, Attack) else attack_registry.get_attack(item[0], **item[1])


def _attack_record(base, threat, attack, attacked_model, model, x, y, batch_size, verbose):
    """Runs one attack and scores its images on ``model``."""
    settings = dict(attack.describe())
    name = settings.pop("attack", getattr(attack, "name", "attack"))
    eps = settings.pop("eps", attack.eps)
    settings.pop("seed", None)
    started = time.time()
    result = attack.run(attacked_model, x, y, batch_size=batch_size, verbose=verbose)
    x_adv = np.asarray(result.x_adv, np.float32)
    correct = predict_classes(model, x_adv, batch_size) == y
    extra = dict(threat)
    extra["max_perturbation"] = float(np.max(np.abs(x_adv - x)))
    extra["min_pixel"] = float(np.min(x_adv))
    extra["max_pixel"] = float(np.max(x_adv))
    extra.update(summarize_extras(result.extras))
    seconds = attack_seconds(time.time() - started, extra.get("stages"))
    record = _record(base, name, eps, len(y), correct, seconds, settings, extra)
    return record, correct


def evaluate_model(model, x, y, attacks, batch_size=256, verbose=1,
                   model_name="model", method="unknown", source=None,
                   source_name=None):
    """Clean and adversarial accuracy of ``model`` on ``(x, y)``.

    Args:
        model: Callable ``model(x, training=False) -> logits`` (a Keras
            model, or a reloaded SavedModel from `export.load_classifier`).
        x: Images ``(N, H, W, C)`` in [0, 1]; y: integer labels ``(N,)``.
        attacks: `Attack` objects, ``(name, kwargs)`` pairs for the registry
            (kwargs include ``eps``), or ``None`` / ``"none"`` (skipped: the
            clean record is always first).
        batch_size: Examples per attack / prediction call.
        verbose: 1 prints one line per record (stdout) and a progress bar
            per attack (stderr).
        model_name, method: Labels written into each record.
        source: If given, adversarial examples are made on this model and
            transferred to ``model`` (gray/black-box); None = white-box.
        source_name: Label of ``source`` in the records.

    Returns:
        A list of record dicts (see the module docstring).

    Raises:
        UsageError: For invalid images or labels, or a model returning
            probabilities.
    """
    x, y = check_attack_inputs(model, x, y, batch_size)
    n = len(y)
    base = {"model": model_name, "method": method}
    threat = {"threat_model": "white-box"}
    if source is not None:
        threat = {"threat_model": "transfer", "source": source_name or "source"}

    started = time.time()
    clean_correct = predict_classes(model, x, batch_size) == y
    records = [_record(base, CLEAN, 0.0, n, clean_correct, time.time() - started,
                       {"num_steps": 0, "step_size": 0.0, "restarts": 0})]
    _report(records[-1], verbose)
    correct_by_eps = {}
    for item in attacks:
        attack = _as_attack(item)
        if attack is None:
            continue
        record, correct = _attack_record(base, threat, attack, source if source is not None
                                         else model, model, x, y, batch_size, verbose)
        records.append(record)
        _report(record, verbose)
        correct_by_eps.setdefault(record["eps"], []).append((record["attack"], correct))

    for eps, results in correct_by_eps.items():
        if len(results) < 2:
            continue
        # Robust only if every attack (and the clean input) fails.
        correct = np.logical_and.reduce([clean_correct] + [c for _, c in results])
        records.append(_record(base, WORST_CASE, eps, n, correct, 0.0,
                               extra={**threat, "components": [a for a, _ in results]}))
        _report(records[-1], verbose)
    return records


def _report(record, verbose):
    if not verbose:
        return
    steps = record.get("num_steps")
    label = record["attack"] if record["attack"] == CLEAN else (
        f"{record['attack']} eps={format_eps(record['eps'])}"
        + (f" steps={steps}" if steps else ""))
    print(f"{label:<36} accuracy {record['accuracy']:.4f} "
          f"(n={record['n']}, {record['seconds']:.1f} s)", flush=True)

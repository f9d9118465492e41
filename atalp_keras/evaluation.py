"""Robust accuracy under a suite of attacks, as records, JSON and Markdown.

A suite is a list of attacks named as in the attack registry
(``atalp_keras.attacks.get_attack``), so every registered attack plugs in by
name: ``fgsm``, ``pgd`` and the ones added later (``apgd-ce``, ``autoattack``,
``rays``, ...). Suite-wide settings (``num_steps``, ``step_size``,
``restarts``, ``queries``) go to each attack whose constructor takes them;
per-attack options override them (``pgd:num_steps=50:restarts=5``)::

    requests = parse_attack_list("fgsm,pgd:restarts=5")
    attacks = build_attacks(requests, eps_values=[8 / 255], num_steps=20)
    records = evaluate_model(model, x_test, y_test, attacks)
    print(write_results(records, "results/my_model"))

Each record: ``model, method, attack, eps, num_steps, step_size, restarts, n,
accuracy, seconds`` plus the attack's other ``describe()`` settings,
``threat_model`` (``white-box``, or ``transfer`` when the examples are made on
a ``source`` model), ``max_perturbation`` (the largest L-inf change
actually made) and ``min_pixel``/``max_pixel`` of the adversarial images, so
the audit can check the eps-ball and the [0, 1] box. Clean accuracy is the record with
attack ``none``; with several attacks at one eps, ``worst-case`` counts an
example as robust only if it survives all of them.
"""

import inspect
import json
import math
import os
import time

import numpy as np
import tensorflow as tf

from atalp_keras import attacks as attack_registry
from atalp_keras import data, export
from atalp_keras.attacks.base import Attack, check_eps

CLEAN = "none"
WORST_CASE = "worst-case"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
TABLE_COLUMNS = ("model", "method", "attack", "eps", "steps", "restarts", "n",
                 "accuracy")

# Suite-wide settings an attack ignores although its constructor takes them:
# FGSM is one step of size eps by definition.
_IGNORED_SETTINGS = {"fgsm": ("num_steps", "step_size", "restarts")}
# Query budgets go by several names in attack constructors.
_QUERY_NAMES = ("queries", "num_queries", "max_queries", "n_queries",
                "query_budget")
# Evaluation defaults that differ from an attack's constructor default
# (applied below suite-wide settings and per-attack options).
EVALUATION_DEFAULTS = {"pgd": {"num_steps": 20}}


# ------------------------------------------------------------ attack suite


def _parse_value(text):
    """Option values: ints, floats, fractions (``8/255``), booleans, strings."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if "/" in text:
        numerator, _, denominator = text.partition("/")
        try:
            return float(numerator) / float(denominator)
        except (ValueError, ZeroDivisionError):
            pass
    return text.strip()


def parse_attack_list(spec):
    """Parses ``"fgsm,pgd:num_steps=50:restarts=5"`` into requests.

    Args:
        spec: A comma-separated string, or a list of items. An item is a
            registry name, optionally followed by ``:key=value`` options.

    Returns:
        A list of ``(name, options)`` pairs, in order.

    Raises:
        ValueError: For an empty list, an unknown attack name or a malformed
            option. The message lists the registered attacks.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [item.strip() for item in items if item and item.strip()]
    if not items:
        raise ValueError(f"No attacks given. Expected a comma-separated list "
                         f"of: {', '.join(_known_attacks())}. Received: "
                         f"{spec!r}")
    requests = []
    for item in items:
        name, *parts = item.split(":")
        name = name.strip().lower()
        if name != CLEAN and name not in attack_registry.ATTACKS:
            raise ValueError(f"Unknown attack {name!r}. Expected one of: "
                             f"{', '.join(_known_attacks())}. Received: "
                             f"attacks={item!r}")
        options = {}
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(
                    f"Attack options are written name:key=value[:key=value],"
                    f" e.g. pgd:num_steps=50. Received: {item!r}")
            options[key.strip()] = _parse_value(value)
        _check_options(name, options)
        requests.append((name, options))
    return requests


def _check_options(name, options):
    params = _constructor_params(name) if name != CLEAN else set()
    if params is None:
        return
    unknown = sorted(set(options) - params)
    if unknown:
        raise ValueError(
            f"Attack {name!r} takes no option(s) {unknown}. It takes: "
            f"{', '.join(sorted(params - {'eps'})) or 'none'}.")


def _known_attacks():
    return [CLEAN] + sorted(attack_registry.ATTACKS)


def _constructor_params(name):
    cls = attack_registry.ATTACKS.get(name)
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return None  # Unknown signature: pass explicit options only.
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return {p for p in params if p != "self"}


def build_attacks(requests, eps_values, num_steps=None, step_size=None,
                  restarts=None, queries=None, seed=0):
    """Instantiates every requested attack at every eps.

    Args:
        requests: ``(name, options)`` pairs (see `parse_attack_list`), or
            registry names.
        eps_values: L-inf radii on the [0, 1] scale.
        num_steps, step_size, restarts, queries: Suite-wide settings, given to
            each attack whose constructor takes them; None leaves the attack's
            own default (``EVALUATION_DEFAULTS``: PGD takes 20 steps). Per-attack
            options win over them. ``queries`` goes to the attack's query
            budget whatever its constructor calls it.
        seed: Seed of the attacks' random starts.

    Returns:
        A list of `Attack` objects (``None`` for the clean entry ``none``),
        grouped by attack, then eps.

    Raises:
        ValueError: For a bad eps, an unknown attack, or an option the attack
            does not take.
    """
    eps_values = [check_eps(e, "eps") for e in eps_values]
    if not eps_values:
        raise ValueError("Give at least one eps value. Received: eps=[]")
    built = []
    for request in requests:
        name, options = (request, {}) if isinstance(request, str) else request
        if name == CLEAN:
            built.append(None)
            continue
        if name not in attack_registry.ATTACKS:
            raise ValueError(f"Unknown attack {name!r}. Expected one of: "
                             f"{', '.join(_known_attacks())}.")
        params = _constructor_params(name)
        settings = {"num_steps": num_steps, "step_size": step_size,
                    "restarts": restarts, "seed": seed}
        if queries is not None and params is not None:
            for alias in _QUERY_NAMES:
                if alias in params:
                    settings[alias] = queries
        for key in _IGNORED_SETTINGS.get(name, ()):
            settings.pop(key, None)
        kwargs = dict(EVALUATION_DEFAULTS.get(name, {}))
        kwargs.update({k: v for k, v in settings.items() if v is not None
                       and (params is None and k == "seed"
                            or params is not None and k in params)})
        _check_options(name, options)
        kwargs.update(options)
        for eps in eps_values:
            built.append(attack_registry.get_attack(name, **{**kwargs,
                                                             "eps": eps}))
    return built


# -------------------------------------------------------------- evaluation


def _inference(model):
    return tf.function(lambda xb: model(xb, training=False),
                       reduce_retracing=True)


def _predict_classes(forward, x, batch_size):
    classes = []
    for start in range(0, len(x), batch_size):
        logits = forward(tf.constant(x[start:start + batch_size]))
        classes.append(np.argmax(np.asarray(logits, np.float32), axis=-1))
    return np.concatenate(classes) if classes else np.zeros((0,), np.int64)


def _record(base, attack_name, eps, n, correct, seconds, settings=None,
            extra=None):
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
    }
    record.update(settings)
    record.update(extra or {})
    return record


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
        verbose: 1 prints one line per record.
        model_name, method: Labels written into each record.
        source: If given, adversarial examples are made on this model and
            transferred to ``model`` (gray/black-box); None = white-box.
        source_name: Label of ``source`` in the records.

    Returns:
        A list of record dicts (see the module docstring).
    """
    x, y = data.validate_arrays(x, y)
    n = len(y)
    base = {"model": model_name, "method": method}
    threat = {"threat_model": "white-box"}
    if source is not None:
        threat = {"threat_model": "transfer",
                  "source": source_name or "source"}

    forward = _inference(model)
    started = time.time()
    clean_correct = _predict_classes(forward, x, batch_size) == y
    records = [_record(base, CLEAN, 0.0, n, clean_correct,
                       time.time() - started,
                       {"num_steps": 0, "step_size": 0.0, "restarts": 0})]
    _report(records[-1], verbose)

    correct_by_eps = {}
    for item in attacks:
        if item is None or item == CLEAN or (
                isinstance(item, tuple) and item[0] == CLEAN):
            continue
        attack = item if isinstance(item, Attack) else \
            attack_registry.get_attack(item[0], **item[1])
        settings = dict(attack.describe())
        name = settings.pop("attack", getattr(attack, "name", "attack"))
        eps = settings.pop("eps", attack.eps)
        settings.pop("seed", None)
        started = time.time()
        x_adv = np.asarray(attack.perturb(source if source is not None
                                          else model, x, y,
                                          batch_size=batch_size), np.float32)
        correct = _predict_classes(forward, x_adv, batch_size) == y
        seconds = time.time() - started
        extra = dict(threat)
        extra["max_perturbation"] = float(np.max(np.abs(x_adv - x))) \
            if n else 0.0
        extra["min_pixel"] = float(np.min(x_adv)) if n else 0.0
        extra["max_pixel"] = float(np.max(x_adv)) if n else 0.0
        records.append(_record(base, name, eps, n, correct, seconds,
                               settings, extra))
        _report(records[-1], verbose)
        correct_by_eps.setdefault(float(eps), []).append((name, correct))

    for eps, results in correct_by_eps.items():
        if len(results) < 2:
            continue
        # Robust only if every attack (and the clean input) fails.
        correct = np.logical_and.reduce(
            [clean_correct] + [c for _, c in results])
        records.append(_record(base, WORST_CASE, eps, n, correct, 0.0,
                               extra={**threat,
                                      "components": [a for a, _ in results]}))
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


# ----------------------------------------------------------------- outputs


def format_eps(eps):
    """``0.0313725`` -> ``8/255``; ``0.2`` -> ``0.2``; ``0`` -> ``0``."""
    if eps == 0:
        return "0"
    if abs(round(eps, 4) - eps) < 1e-12:
        return f"{eps:g}"
    for denominator in (255, 256):
        k = eps * denominator
        if abs(k - round(k)) < 1e-6:
            return f"{int(round(k))}/{denominator}"
    return f"{eps:.4g}"


def _cell(value):
    return "-" if value is None or value == "" else str(value)


def format_table(records):
    """The Markdown table (model, method, attack, eps, steps, restarts, n,
    accuracy) of ``records``."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |",
             "| " + " | ".join("---" for _ in TABLE_COLUMNS) + " |"]
    for r in records:
        attack = r["attack"]
        if r.get("threat_model") == "transfer":
            attack = f"{attack} (from {r.get('source', 'source')})"
        accuracy = r["accuracy"]
        row = [r.get("model"), r.get("method"), attack,
               format_eps(r["eps"]) if attack != CLEAN else "-",
               r.get("num_steps") or "-", r.get("restarts") or "-", r["n"],
               "nan" if math.isnan(accuracy) else f"{100 * accuracy:.2f}%"]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def write_results(records, out_dir):
    """Writes ``results.json`` and ``results.md`` into ``out_dir``.

    Returns:
        The Markdown table text.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"`out_dir` is a file, not a folder. Received: "
                         f"out_dir={out_dir!r}")
    os.makedirs(out_dir, exist_ok=True)
    table = format_table(records)
    with open(os.path.join(out_dir, RESULTS_JSON), "w") as handle:
        json.dump(records, handle, indent=2)
    with open(os.path.join(out_dir, RESULTS_MD), "w") as handle:
        handle.write(table)
    return table


def check_source_compatible(source, target, source_path):
    """A transfer source must take the target's images and predict its classes.

    Raises:
        ValueError: naming both shapes / class counts.
    """
    def signature(model):
        shape = tuple(model.input_shape[1:])
        classes = getattr(model, "num_classes", None)
        if classes is None and getattr(model, "outputs", None):
            classes = int(model.outputs[0].shape[-1])
        return shape, classes

    (s_shape, s_classes), (t_shape, t_classes) = signature(source), signature(target)
    if s_shape != t_shape:
        raise ValueError(
            f"Source model {source_path!r} takes images of shape {s_shape}, but the "
            f"evaluated model takes {t_shape}: adversarial examples cannot transfer. "
            f"Received: source_model={source_path!r}")
    if s_classes is not None and t_classes is not None and s_classes != t_classes:
        raise ValueError(
            f"Source model {source_path!r} predicts {s_classes} classes, but the "
            f"evaluated model predicts {t_classes}. Received: source_model={source_path!r}")


# ------------------------------------------------- models and their data


def resolve_model_path(path):
    """A training ``model_dir`` -> its ``classifier.keras``; other paths
    unchanged."""
    path = os.fspath(path)
    candidate = os.path.join(path, "classifier.keras")
    if os.path.isdir(path) and os.path.isfile(candidate) and not any(
            os.path.isfile(os.path.join(path, n))
            for n in ("saved_model.pb", "saved_model.pbtxt")):
        return candidate
    return path


def load_model_for_eval(path):
    """Loads a classifier and what is known about how it was trained.

    Args:
        path: A SavedModel folder (or a folder of numbered versions), a
            ``.keras`` file (a classifier or a saved ``ATALPModel``), or a
            training ``model_dir``.

    Returns:
        ``(model, metadata)``: a logits model and a dict that may hold
        ``dataset``, ``data_dir``, ``image_size``, ``data_seed``, ``method``,
        ``eps`` and ``name``.

    Raises:
        ValueError: If nothing loadable is at ``path``.
    """
    path = resolve_model_path(path)
    model = export.load_classifier(path)
    classifier = getattr(model, "classifier", None)
    metadata = {}
    if classifier is not None and hasattr(model, "stage_layers"):
        metadata["method"] = getattr(model, "method", None)
        model = classifier  # A saved training model: attack its classifier.
    if isinstance(model, export.SavedModelClassifier):
        metadata.update(model.metadata or {})
        metadata["name"] = _saved_model_label(model.saved_model_path)
    else:
        run_dir = os.path.dirname(os.path.abspath(path))
        metrics_path = os.path.join(run_dir, "metrics.json")
        if os.path.isfile(metrics_path):
            with open(metrics_path) as handle:
                config = json.load(handle).get("config", {})
            for key in ("dataset", "data_dir", "image_size", "data_seed",
                        "method", "eps"):
                if config.get(key) is not None:
                    metadata[key] = config[key]
            metadata["name"] = os.path.basename(run_dir)
        else:
            metadata["name"] = os.path.splitext(os.path.basename(path))[0]
    return model, {k: v for k, v in metadata.items() if v is not None}


def _saved_model_label(path):
    path = os.path.normpath(os.path.abspath(path))
    version = os.path.basename(path)
    if version.isdigit():
        return f"{os.path.basename(os.path.dirname(path))}_v{version}"
    return version


def load_test_arrays(spec, data_dir=None, image_size=None, data_seed=0,
                     num_examples=0, seed=0):
    """The test split of a dataset as numpy arrays.

    Args:
        spec, data_dir, image_size: As in `data.load_dataset`.
        data_seed: Seed of the train/test split (must match training).
        num_examples: Keep a fixed random subset of this many; 0 = all.
        seed: Seed of that subset.

    Returns:
        ``(x, y, info)`` with ``info`` the `data.DatasetInfo`.
    """
    info = data.load_dataset(spec, data_dir=data_dir, image_size=image_size,
                             seed=data_seed)
    test = info.test
    if num_examples and num_examples < info.num_test:
        test = test.shuffle(min(info.num_test, 10_000), seed=seed,
                            reshuffle_each_iteration=False)
    x, y = data.to_numpy(test, limit=num_examples or None)
    return x, y, info

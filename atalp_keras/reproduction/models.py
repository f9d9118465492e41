"""Training of the reproduction's models: the main models of every method and
seed, their gray-box and black-box transfer sources, and the reuse of models
an earlier invocation finished (or the continuation of a killed one)."""

import dataclasses
import json
import os
import time

import numpy as np

from atalp_keras import artifacts
from atalp_keras.errors import UsageError
from atalp_keras.reproduction.common import count, load_json, log
from atalp_keras.training.config import BEFORE_RECORDED

# TrainConfig fields a reused model must share with the one asked for.
COMPARED_CONFIG = ("dataset", "data_seed", "max_train_examples", "augment", "model",
                   "tiny_widths", "method", "eps", "step_size", "num_steps", "at_weight",
                   "alp_weight", "epochs", "batch_size", "optimizer", "learning_rate",
                   "momentum", "lr_schedule", "weight_decay", "seed", "validation_split",
                   "keep", "awp_gamma", "awp_warmup_epochs", "mart_beta", "pair_pass")


def recipe_at(s, eps=None):
    """The recipe with the training radius ``eps`` (step scaled with it)."""
    recipe = dict(s.recipe)
    if eps is not None and float(eps) != float(recipe["eps"]):
        if recipe.get("step_size") is not None:
            recipe["step_size"] = float(eps) * (recipe["step_size"] / recipe["eps"])
        recipe["eps"] = float(eps)
    return recipe


def train_config(s, method, seed, model_dir, eps=None, **overrides):
    """The `TrainConfig` of one model: the recipe at ``eps`` plus ``overrides``
    (TrainConfig names; None values are left at TrainConfig's default)."""
    from atalp_keras.training import TrainConfig

    values = recipe_at(s, eps)
    values.update({k: v for k, v in overrides.items() if v is not None})
    # The reproduction trains on every training example and keeps the last
    # epoch (it has no per-epoch validation) unless its recipe says otherwise.
    values.setdefault("validation_split", 0.0)
    values.setdefault("keep", "last")
    values.setdefault("eval_pgd_steps", 0)
    return TrainConfig(method=method, seed=seed, model_dir=model_dir, export=False, **values)


def main_dir(s, method, seed, eps=None):
    return os.path.join(s.out_for(eps if eps is not None else s.eps), "models", method,
                        f"seed{seed}")


def longer_dir(s, method, seed):
    """The folder of ``method``'s --longer_epochs model (at the training eps)."""
    return os.path.join(os.path.dirname(main_dir(s, method, seed)),
                        f"epochs{s.longer_epochs}_seed{seed}")


def train_model(config, label, ledger=None):
    """Trains ``config`` unless its folder holds that finished model already.

    Returns:
        ``(metrics, reused)``.

    Raises:
        UsageError: If the folder holds a model trained with other settings.
    """
    from atalp_keras import training

    wanted = json.loads(json.dumps(dataclasses.asdict(config.validate()), default=str))
    folder = artifacts.RunFolder(config.model_dir)
    # A model several methods share (--blackbox_method) is counted once.
    counted = ledger.setdefault("model_dirs", set()) if ledger is not None else set()
    if config.model_dir in counted:
        ledger = None
    counted.add(config.model_dir)
    if os.path.isfile(folder.metrics) and os.path.isfile(folder.classifier):
        metrics = load_json(folder.metrics)
        stored = metrics.get("config", {})
        for key in COMPARED_CONFIG:
            if stored.get(key, BEFORE_RECORDED.get(key)) != wanted.get(key):
                raise UsageError(
                    f"{config.model_dir} holds a model trained with {key}={stored.get(key)!r}, "
                    f"but this run wants {key}={wanted.get(key)!r}. Use another --out (or "
                    f"delete that folder) to train with the new settings.")
        log(f"reuse {label} ({config.model_dir})")
        count(ledger, "reused", training_seconds(metrics), "train_seconds")
        return metrics, True
    started = time.time()
    metrics = training.train(config)
    log(f"trained {label}: {time.time() - started:.0f} s, clean test accuracy "
        f"{100 * metrics['test']['accuracy']:.1f}%")
    import keras

    keras.backend.clear_session()
    count(ledger, "trained", training_seconds(metrics), "train_seconds")
    return metrics, False


def training_seconds(metrics):
    """The compute of a model's whole training, over every session of a
    resumed run: its epochs' seconds (history.json keeps every epoch's) plus
    the last session's time outside ``fit`` (set-up, test, saving).
    metrics.json's ``seconds`` covers the last session alone."""
    epochs = sum(row.get("seconds", 0.0) for row in metrics.get("history", []))
    outside = metrics.get("seconds", 0.0) - metrics.get("training", {}).get("fit_seconds", 0.0)
    return round(max(metrics.get("seconds", 0.0), epochs + max(outside, 0.0)), 2)


def epoch_seconds(metrics):
    """``(first, steady)``: the first epoch (includes graph tracing) and the
    mean of the later ones (the per-epoch cost)."""
    seconds = [row["seconds"] for row in metrics.get("history", []) if "seconds" in row]
    if not seconds:
        return None, None
    steady = seconds[1:] or seconds
    return float(seconds[0]), float(np.mean(steady))


def method_weights(method, chosen):
    """The swept loss weights a method trains with (``chosen`` from the sweep)."""
    if not chosen:
        return {}
    if method == "at_alp":
        return {"at_weight": chosen["at_weight"], "alp_weight": chosen["alp_weight"]}
    if method == "at":
        return {"at_weight": chosen["at_weight"]}
    return {}


def train_method(s, method, seeds, eps, chosen, ledger, sources=True):
    """Trains one method's main models (and its sources when ``sources``).

    The gray-box source is a model of the same architecture and method with
    another seed: a separately trained ``--source_seed`` model, or (with
    ``--gray_from_seeds`` and two or more seeds) another main seed's model. The
    black-box source has another architecture; with ``--blackbox_method`` one
    source of that method serves every method.

    Returns:
        ``(entries, sources_by_name, metrics_by_role)``: one entry per main model
        (name, method, seed, dir, eps), ``{entry name: {"gray"|"black": (label,
        dir)}}`` (empty dicts without ``sources``) and ``{"main": [...],
        "gray": m, "black": m}`` ("gray" only where a gray source is trained).
    """
    weights = method_weights(method, chosen)
    entries, metrics = [], {"main": []}
    for seed in seeds:
        model_dir = main_dir(s, method, seed, eps)
        m, _ = train_model(train_config(s, method, seed, model_dir, eps, **weights),
                           f"{method} seed {seed} (eps {eps:g})", ledger)
        metrics["main"].append(m)
        entries.append({"name": f"{method}_seed{seed}", "method": method, "seed": seed,
                        "dir": model_dir, "eps": eps})
    if not sources:
        return entries, {e["name"]: {} for e in entries}, metrics
    folder = os.path.dirname(main_dir(s, method, 0, eps))
    if s.gray_from_main(method):
        gray = {e["name"]: (entries[(i + 1) % len(entries)]["name"],
                            entries[(i + 1) % len(entries)]["dir"])
                for i, e in enumerate(entries)}
    else:
        gray_dir = os.path.join(folder, f"gray_seed{s.source_seed}")
        metrics["gray"], _ = train_model(
            train_config(s, method, s.source_seed, gray_dir, eps, **weights),
            f"{method} gray source", ledger)
        gray = {e["name"]: (f"{method}_gray_seed{s.source_seed}", gray_dir) for e in entries}
    black_method = s.blackbox_method or method
    black_dir = os.path.join(os.path.dirname(main_dir(s, black_method, 0, eps)),
                             f"black_{s.blackbox_model}_seed{s.source_seed}")
    metrics["black"], _ = train_model(
        train_config(s, black_method, s.source_seed, black_dir, eps, model=s.blackbox_model,
                     **method_weights(black_method, chosen)),
        f"{black_method} black source ({s.blackbox_model})", ledger)
    black = (f"{black_method}_black_{s.blackbox_model}", black_dir)
    return entries, {e["name"]: {"gray": gray[e["name"]], "black": black}
                     for e in entries}, metrics

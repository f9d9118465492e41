"""`train`: a `TrainConfig` in, a trained, checkpointed, exported model out.

One call does a whole run, in these steps::

    validate -> strategy -> run folder checked -> data pipelines
      -> classifier + weight decay + attacks -> ATALPModel.compile
      -> run folder started (flags.txt, model_card.json)
      -> fit (backup/resume, TensorBoard, per-epoch .keras, history;
         validation on a split held out of the training examples)
      -> the kept weights (--keep: the best validation epoch, or the last)
      -> final test evaluation -> classifier.keras, model.keras
      -> SavedModel export (export_dir/<name>/<version>/) -> metrics.json

Nothing here reads flags. Every setting is checked, and every input folder
and data set opened, before the run folder is touched.
"""

import dataclasses
import time

import keras
import numpy as np
from absl import logging

from atalp_keras import artifacts, data, methods
from atalp_keras.attacks.pgd import PGDAttack
from atalp_keras.errors import UsageError
from atalp_keras.model import ATALPModel
from atalp_keras.training import optim, run_folder, run_lock
from atalp_keras.training.callbacks import OverfitGuard, make_callbacks
from atalp_keras.training.classifier import build_classifier
from atalp_keras.training.distribute import adapt_to_multi_worker, make_cluster
from atalp_keras.training.exporting import (check_export_target,
                                            export_base, export_classifier)
from atalp_keras.training.pipelines import load_data, make_pipelines


def train(config):
    """Runs one training job end to end (see the module docstring).

    Args:
        config: A `TrainConfig`.

    Returns:
        The dict written to ``model_dir/metrics.json`` (on the chief; other
        workers return the same keys without the export).

    Raises:
        UsageError: For bad settings, data or paths, before training starts.
    """
    config = config.validate()
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _run(config)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


@dataclasses.dataclass
class _Parts:
    """What `_build_model` makes: the model and the pieces it records."""

    model: ATALPModel
    classifier: keras.Model
    attack: object
    eval_attack: object
    num_decayed: int
    jit_compile: bool
    jit_note: str


def _run(config):
    started = time.time()
    # A multi-worker strategy must exist before other TF ops run.
    cluster = make_cluster(config.distribution, config.devices)
    run_dir = run_folder.check_run_dir(config, cluster)
    commit = artifacts.git_commit()
    if config.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(config.mixed_precision)
    keras.utils.set_random_seed(config.seed)
    info = load_data(config)
    base_dir = export_base(config, info)
    if config.export and cluster.is_chief:
        check_export_target(base_dir, config.export_version)
    pipes = make_pipelines(config, info, cluster.replicas)
    rate = optim.learning_rate(config, pipes.steps_per_epoch)
    parts = _build_model(config, info, cluster, rate)

    # Everything checked: only now touch model_dir, under its lock.
    lock = run_lock.RunLock(run_dir.path).acquire()
    try:
        card = run_folder.model_card(config, info, commit)
        run_folder.start_run_dir(run_dir, config.flags_text, card)
        logging.info("Training %s (%s, %d weights, %d kernels with L2) on "
                     "%s: %d train / %d test examples, %d replicas, %d "
                     "steps/epoch.", parts.classifier.name, config.method,
                     parts.classifier.count_params(), parts.num_decayed,
                     info.name, pipes.num_train, pipes.num_eval,
                     cluster.replicas, pipes.steps_per_epoch)
        fitted = _fit(config, parts, pipes, cluster, run_dir, rate)
        result = _result(config, commit, cluster, pipes, parts, fitted)

        run_folder.save_models(run_dir, parts.classifier, parts.model)
        if cluster.is_chief:
            if config.export:
                result["export_path"] = export_classifier(
                    config, info, base_dir, run_dir.folder.classifier,
                    commit, result["test"])
            result["seconds"] = round(time.time() - started, 2)
        run_folder.finish_run_dir(run_dir, result, card)
    finally:
        lock.release()
    return artifacts.to_python(result)


def _jit_setting(config, cluster):
    """``(jit_compile, note)``: XLA with several replicas on CPU devices
    fails in TF 2.21 ("Trying to access resource ... replica_1 ... from
    device CPU:0"), so it is switched off there, with a note."""
    if config.jit_compile and cluster.replicas > 1 and cluster.cpu_only:
        note = ("jit_compile disabled: XLA with several replicas on CPU "
                "devices is not supported by TensorFlow")
        logging.warning(note)
        return False, note
    return config.jit_compile, None


def _attacks(config):
    attack = methods.default_attack(
        config.method, eps=config.eps, step_size=config.step_size,
        num_steps=config.num_steps, seed=config.seed)
    eval_attack = None
    if config.eval_pgd_steps > 0:
        eval_attack = PGDAttack(config.eps, step_size=config.step_size,
                                num_steps=config.eval_pgd_steps,
                                seed=config.seed + 1)
    return attack, eval_attack


def _build_model(config, info, cluster, rate):
    """The compiled `ATALPModel`, its classifier (weight decay attached) and
    attacks, all made under the strategy."""
    strategy, multi_worker = cluster.strategy, cluster.multi_worker
    jit_compile, jit_note = _jit_setting(config, cluster)
    try:
        with strategy.scope():
            classifier, stage_layers = build_classifier(config, info,
                                                        cluster.replicas)
            num_decayed = optim.add_weight_decay(classifier,
                                                 config.weight_decay)
            attack, eval_attack = _attacks(config)
            if not multi_worker:
                model = ATALPModel(classifier, stage_layers=stage_layers)
        if multi_worker:
            # Built outside the scope (its variables all live in the
            # classifier, the attacks and compile, made inside): see
            # adapt_to_multi_worker.
            model = ATALPModel(classifier, stage_layers=stage_layers)
        with strategy.scope():
            model.compile(
                optimizer=optim.make_optimizer(config, rate),
                method=config.method, attack=attack, eval_attack=eval_attack,
                natural_weight=config.natural_weight,
                adv_weight=config.adv_weight, alp_weight=config.alp_weight,
                at_weight=config.at_weight, trades_beta=config.trades_beta,
                mart_beta=config.mart_beta, awp_gamma=config.awp_gamma,
                awp_warmup_epochs=config.awp_warmup_epochs, pair_pass=config.pair_pass,
                clean_metrics=config.clean_metrics, jit_compile=jit_compile,
                steps_per_execution=config.steps_per_execution)
            if multi_worker:
                adapt_to_multi_worker(model)
    except UsageError:
        raise
    except ValueError as error:
        raise UsageError(str(error)) from None
    return _Parts(model, classifier, attack, eval_attack, num_decayed,
                  jit_compile, jit_note)


def _fit(config, parts, pipes, cluster, run_dir, rate):
    """Fits and evaluates on the test set; returns what the record needs."""
    monitor = "val_adv_accuracy" if parts.eval_attack is not None \
        and pipes.num_val_adv else "val_accuracy"
    callbacks, run_log, tensorboard_note = make_callbacks(
        run_dir.path, monitor, rate, cluster.is_chief)
    guard = _overfit_guard(config, parts, pipes)
    if guard is not None:
        callbacks.insert(0, guard)  # before RunLog: see OverfitGuard
    fit_started = time.time()
    with cluster.strategy.scope():
        parts.model.fit(pipes.train, epochs=config.epochs,
                        steps_per_epoch=pipes.steps_per_epoch,
                        validation_data=pipes.validation, callbacks=callbacks,
                        verbose=config.verbose,
                        shuffle=False)  # The pipeline shuffles (seeded).
        fit_seconds = time.time() - fit_started
        selection = _keep_weights(config, parts, run_log, monitor, pipes)
        # The test set's one look: after the weights are chosen.
        test_logs = parts.model.evaluate(pipes.test, return_dict=True,
                                         verbose=config.verbose)
    return dict(run_log=run_log, tensorboard_note=tensorboard_note,
                fit_seconds=fit_seconds, test_logs=test_logs, selection=selection,
                guard=guard.summary() if guard is not None else None)


def _keep_weights(config, parts, run_log, monitor, pipes):
    """Loads the weights ``config.keep`` asks for into the classifier and
    says which epoch they are and why (the record's ``selection``)."""
    rows = run_log.rows
    last = rows[-1]["epoch"] if rows else None
    source = (f"{pipes.num_val} training examples held out (validation_split="
              f"{config.validation_split:g}, seeded by data_seed), "
              f"{pipes.num_val_adv} of them attacked")
    if config.keep == "last" or not rows:
        return {"keep": config.keep, "epoch": last, "monitor": None, "value": None,
                "why": "the last epoch's weights (--keep=last)" if rows else "no epoch ran"}
    scored = [r for r in rows if monitor in r]
    if not scored:
        raise RuntimeError(f"keep='best' found no {monitor!r} in the history: {rows[-1]}")
    # max keeps the first of equal values: the epoch RunLog saved as best.keras.
    best = max(scored, key=lambda r: r[monitor])
    if best["epoch"] != last:
        path = run_log.folder.best_checkpoint
        saved = keras.saving.load_model(path, compile=False)
        parts.classifier.set_weights(saved.classifier.get_weights())
        logging.info("Keeping the weights of epoch %d (best %s %.4f; the last epoch, %d, "
                     "had %.4f).", best["epoch"], monitor, best[monitor], last,
                     rows[-1].get(monitor, float("nan")))
    what = "PGD" if monitor == "val_adv_accuracy" else "clean"
    return {"keep": "best", "epoch": best["epoch"], "monitor": monitor,
            "value": best[monitor], "last_epoch": last,
            "last_value": rows[-1].get(monitor),
            "validation": source,
            "why": (f"highest {monitor} ({what} accuracy on the held-out validation split; "
                    "early stopping of Rice et al. 2020); the test set was not looked at")}


GUARD_EXAMPLES = 512
GUARD_PGD_STEPS = 10


def _overfit_guard(config, parts, pipes):
    """The `OverfitGuard` of ``config`` (None when it is off): PGD-10 at the
    training eps on a fixed subset of the held-out validation images (seeded
    by data_seed, so every seed's run watches the same images)."""
    if not config.overfit_guard_drop:
        return None
    subset, count = data.take_subset(pipes.val_examples, GUARD_EXAMPLES, pipes.num_val,
                                     config.data_seed + 2)
    x, y = next(iter(data.make_pipeline(subset, count, cache=False)))
    # PGD's default step, 2.5 * eps / steps.
    attack = PGDAttack(config.eps, num_steps=GUARD_PGD_STEPS, seed=config.seed + 2)
    return OverfitGuard(parts.classifier, np.asarray(x), np.asarray(y).astype("int32"),
                        attack, config.overfit_guard_drop)


def _describe(attack):
    return artifacts.to_python(attack.describe()) if attack else None


def _result(config, commit, cluster, pipes, parts, fitted):
    """The run's record, as written to metrics.json."""
    info, model, run_log = pipes.info, parts.model, fitted["run_log"]
    test_logs = fitted["test_logs"]
    return {
        "git_commit": commit,
        "config": artifacts.to_python(dataclasses.asdict(
            dataclasses.replace(config, flags_text=None))),
        "dataset": {"name": info.name, "spec": config.dataset,
                    "input_shape": list(info.input_shape),
                    "num_classes": info.num_classes,
                    "class_names": list(info.class_names),
                    "num_train": pipes.num_train, "num_test": pipes.num_eval},
        "model": {"name": parts.classifier.name,
                  "params": int(parts.classifier.count_params()),
                  "stage_layers": list(model.stage_layers)},
        "training": {
            "distribution": config.distribution,
            "strategy": type(cluster.strategy).__name__,
            "replicas": cluster.replicas,
            # Where the replicas ran (what --devices chose); TensorFlow's
            # default strategy places ops itself and names no devices.
            "devices": (None if config.distribution == "default"
                        else list(cluster.strategy.extended.worker_devices)),
            "task": cluster.task,
            "jit_compile": parts.jit_compile,
            "jit_compile_note": parts.jit_note,
            "tensorboard_note": fitted["tensorboard_note"],
            "steps_per_epoch": pipes.steps_per_epoch,
            "attack": _describe(parts.attack),
            "loss_weights": dict(model.loss_weights_),
            "epochs_completed": len(run_log.rows),
            "resumed_from_epoch": run_log.resumed_from_epoch,
            "fit_seconds": round(fitted["fit_seconds"], 2),
            # The early stop against catastrophic overfitting (None: off).
            "overfit_guard": fitted["guard"],
            # Which epoch's weights were kept, and why (--keep).
            "selection": fitted["selection"],
        },
        "history": run_log.rows,
        # What the history's val_* numbers were measured on.
        "validation": {"n": pipes.num_val, "adv_n": pipes.num_val_adv,
                       "attack": _describe(parts.eval_attack)},
        "test": {
            "n": pipes.num_eval,
            "adv_n": pipes.num_eval if "adv_accuracy" in test_logs else 0,
            "accuracy": float(test_logs["accuracy"]),
            "adv_accuracy": (float(test_logs["adv_accuracy"])
                             if "adv_accuracy" in test_logs else None),
            "attack": _describe(parts.eval_attack),
        },
    }

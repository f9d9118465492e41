"""The AT/ALP weight sweep of ``at_alp`` on a validation split held out of
the TRAINING set (the test set plays no part), with its own budget
(``sweep_epochs``, ``sweep_train_examples``)."""

import os

import numpy as np

from atalp_keras.errors import UsageError
from atalp_keras.reproduction import models
from atalp_keras.reproduction.common import fmt_eps, fmt_weight, load_json, log, save_json


def select_best(grid, key="val_robust", tie_key="val_clean"):
    """The grid entry with the highest ``key``; ``tie_key`` breaks exact ties,
    then the earlier entry wins.

    Raises:
        ValueError: For an empty grid or entries without the keys.
    """
    if not grid:
        raise ValueError("The sweep grid is empty. Received: grid=[]")
    for entry in grid:
        if key not in entry or tie_key not in entry:
            raise ValueError(f"Every grid entry needs {key!r} and {tie_key!r}. "
                             f"Received: {entry!r}")
    best = grid[0]
    for entry in grid[1:]:
        if (entry[key], entry[tie_key]) > (best[key], best[tie_key]):
            best = entry
    return best


def validation_split(info, val_fraction, seed, data_seed, train_examples=0):
    """Splits the training set into the sweep's training part and validation.

    ``TrainConfig.max_train_examples`` trains on a fixed random subset chosen
    by ``training._subset`` after ``keras.utils.set_random_seed(seed)``; the
    same call on an index dataset of the same size gives that subset's
    indices, and validation is the rest, so validation never meets training
    (nor the test set, which is another split).

    Args:
        train_examples: Size of the sweep's training part; 0 = all but
            ``val_fraction`` of the training set.

    Returns:
        ``(num_sweep_train, val_indices)``.
    """
    import keras
    import tensorflow as tf

    from atalp_keras import training

    num_train = info.num_train
    num_val = max(1, int(round(val_fraction * num_train)))
    limit = num_train - num_val
    if train_examples:
        if train_examples >= num_train:
            raise UsageError(f"--sweep_train_examples must be below the {num_train} training "
                             f"images. Received: sweep_train_examples={train_examples}")
        limit = min(limit, train_examples)
    if limit < 1:
        raise UsageError(f"--val_fraction={val_fraction} leaves no training examples "
                         f"of {num_train}.")
    keras.utils.set_random_seed(seed)
    subset, _ = training._subset(tf.data.Dataset.range(num_train), limit, num_train, data_seed)
    train_idx = np.fromiter(subset.as_numpy_iterator(), np.int64)
    val_idx = np.setdiff1d(np.arange(num_train), train_idx)
    if len(val_idx) != num_train - limit or len(np.unique(train_idx)) != limit:
        raise RuntimeError("The validation split does not complement the training subset; "
                           "training._subset changed. Fix validation_split().")
    return limit, val_idx


def validation_arrays(info, val_idx, limit):
    """The validation images (the first ``limit`` of them; 0 = all)."""
    import tensorflow as tf

    from atalp_keras import data

    keep = np.zeros(info.num_train, bool)
    keep[val_idx] = True
    keep = tf.constant(keep)
    dataset = info.train.enumerate().filter(lambda i, example: tf.gather(keep, i))
    dataset = dataset.map(lambda i, example: example)
    x, y = data.to_numpy(dataset, limit=limit or None)
    return x.astype(np.float32), y.astype(np.int32)


def score_on_validation(model_dir, x_val, y_val, s):
    """Clean and PGD-20 accuracy at the training eps on the validation split."""
    import keras

    from atalp_keras import evaluation

    path = os.path.join(model_dir, "validation.json")
    if os.path.isfile(path):
        return load_json(path)
    model, _ = evaluation.load_model_for_eval(model_dir)
    attacks = evaluation.build_attacks([("pgd", {"num_steps": 20, "restarts": 1})], [s.eps],
                                       seed=s.attack_seed)
    records = evaluation.evaluate_model(model, x_val, y_val, attacks,
                                        batch_size=s.eval_batch_size, verbose=0)
    result = {"val_clean": records[0]["accuracy"], "val_robust": records[1]["accuracy"],
              "val_n": records[0]["n"], "attack": records[1]}
    keras.backend.clear_session()
    return save_json(path, result)


def _point(s, seed, limit, data, at_weight, alp_weight, ledger):
    name = f"at{fmt_weight(at_weight)}_alp{fmt_weight(alp_weight)}"
    model_dir = os.path.join(s.out_for(s.eps), "sweep", name)
    config = models.train_config(s, "at_alp", seed, model_dir, at_weight=at_weight,
                                 alp_weight=alp_weight, max_train_examples=limit,
                                 epochs=s.sweep_epochs or None)
    metrics, _ = models.train_model(config, f"sweep {name}", ledger)
    scores = score_on_validation(model_dir, *data, s)
    log(f"sweep {name}: validation clean {100 * scores['val_clean']:.1f}%, "
        f"PGD-20 {100 * scores['val_robust']:.1f}%")
    return {"name": name, "at_weight": at_weight, "alp_weight": alp_weight,
            "val_clean": scores["val_clean"], "val_robust": scores["val_robust"],
            "val_n": scores["val_n"], "epoch_seconds": models.epoch_seconds(metrics)[1],
            "epochs": config.epochs, "stages": []}


def run_sweep(s, info, ledger=None):
    """Stage 1: AT weights (ALP at the preset's); stage 2: ALP weights at the
    chosen AT weight. Returns the summary (also in ``<out>/sweep.json``)."""
    from atalp_keras.methods import get_method

    preset = get_method("at_alp")
    seed = s.seeds[0]
    limit, val_idx = validation_split(info, s.val_fraction, seed, s.recipe.get("data_seed", 0),
                                      s.sweep_train_examples)
    data = validation_arrays(info, val_idx, s.max_val_examples)
    log(f"sweep: {limit} training / {len(val_idx)} validation images (scored: "
        f"{len(data[1])}), seed {seed}")
    done = {}

    def point(at_weight, alp_weight, stage):
        key = (at_weight, alp_weight)
        if key not in done:
            done[key] = _point(s, seed, limit, data, at_weight, alp_weight, ledger)
        done[key]["stages"] = sorted(set(done[key]["stages"]) | {stage})
        return done[key]

    stage1 = [point(w, preset.alp_weight, 1) for w in s.at_weights]
    best_at = select_best(stage1)["at_weight"]
    alp_values = list(dict.fromkeys(list(s.alp_weights) + [preset.alp_weight]))
    best = select_best([point(best_at, w, 2) for w in alp_values])
    summary = {
        "method": "at_alp", "seed": seed, "train_examples": limit,
        "val_examples": int(len(val_idx)), "val_scored": int(len(data[1])),
        "epochs": stage1[0]["epochs"],
        "criterion": (f"PGD-20 accuracy (1 restart, step 2.5*eps/20) at the training eps "
                      f"{fmt_eps(s.eps)} on the validation split; clean accuracy breaks ties"),
        "preset": {"at_weight": preset.at_weight, "alp_weight": preset.alp_weight},
        "grid": list(done.values()),
        "chosen": {"at_weight": best["at_weight"], "alp_weight": best["alp_weight"],
                   "val_robust": best["val_robust"], "val_clean": best["val_clean"]},
        "at_edge": best_at in (min(s.at_weights), max(s.at_weights)) and len(s.at_weights) > 1,
        "alp_edge": best["alp_weight"] in (min(alp_values), max(alp_values))
        and len(alp_values) > 1,
    }
    return save_json(os.path.join(s.out_for(s.eps), "sweep.json"), summary)

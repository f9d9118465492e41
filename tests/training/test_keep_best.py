"""--keep=best keeps the epoch with the best validation PGD accuracy on the
held-out split (Rice et al. 2020; issue 22, item 3) and says which and why."""

import os
import types

import keras
import numpy as np

import atalp_keras as ak
from atalp_keras import artifacts
from atalp_keras.training import TrainConfig, train
from atalp_keras.training.loop import _keep_weights


def _model(seed):
    keras.utils.set_random_seed(seed)
    model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4)))
    model.compile("sgd", method="pat", attack=ak.PGDAttack(0.1, 0.05, 1))
    return model


def test_the_best_validation_epoch_is_loaded_and_recorded(tmp_path):
    folder = artifacts.RunFolder(str(tmp_path))
    best = _model(1)
    (tmp_path / "checkpoints").mkdir()
    artifacts.atomic_save_keras(best, folder.best_checkpoint)
    current = _model(2)   # the last epoch's weights, other than best.keras's
    rows = [{"epoch": 1, "val_adv_accuracy": 0.4}, {"epoch": 2, "val_adv_accuracy": 0.6},
            {"epoch": 3, "val_adv_accuracy": 0.6}, {"epoch": 4, "val_adv_accuracy": 0.5}]
    run_log = types.SimpleNamespace(rows=rows, folder=folder)
    config = TrainConfig(keep="best", validation_split=0.1)
    pipes = types.SimpleNamespace(num_val=30, num_val_adv=20)
    parts = types.SimpleNamespace(classifier=current.classifier)
    selection = _keep_weights(config, parts, run_log, "val_adv_accuracy", pipes)
    # The first epoch reaching the highest value: what RunLog saved as best.keras.
    assert (selection["epoch"], selection["value"], selection["last_epoch"]) == (2, 0.6, 4)
    assert "held-out" in selection["why"] and "test set was not looked at" in selection["why"]
    for a, b in zip(current.classifier.get_weights(), best.classifier.get_weights()):
        np.testing.assert_array_equal(a, b)
    last = _keep_weights(TrainConfig(keep="last"), parts, run_log, "val_adv_accuracy", pipes)
    assert (last["keep"], last["epoch"]) == ("last", 4)


def test_a_run_records_the_kept_epoch(tmp_path):
    result = train(TrainConfig(
        dataset="digits", max_train_examples=96, max_test_examples=32, epochs=2,
        batch_size=32, num_steps=1, eval_pgd_steps=1, eps=0.2, validation_split=0.25,
        tiny_widths=(4, 4, 4, 4), verbose=0, export=False, model_dir=str(tmp_path / "run")))
    selection = result["training"]["selection"]
    history = {row["epoch"]: row["val_adv_accuracy"] for row in result["history"]}
    assert selection["keep"] == "best" and selection["monitor"] == "val_adv_accuracy"
    assert history[selection["epoch"]] == max(history.values()) == selection["value"]
    assert selection["validation"].startswith("24 training examples held out")


def _epoch(run_log, epoch, value):
    """One epoch of `RunLog` (0-based ``epoch``) whose monitor reads ``value``."""
    run_log.on_epoch_begin(epoch)
    run_log.on_epoch_end(epoch, {"val_adv_accuracy": value})


def _weights_of(path):
    return keras.saving.load_model(path, compile=False).classifier.get_weights()


def test_best_keras_never_holds_an_epoch_the_backup_lost(tmp_path):
    """A kill after an improving epoch is logged but before it is backed up:
    the resumed run drops that epoch's row, and best.keras must not keep its
    weights (it would label them with an earlier epoch)."""
    from atalp_keras.training.callbacks import RunLog

    folder = artifacts.RunFolder(str(tmp_path))
    models = [_model(seed) for seed in (1, 2, 3, 4)]
    run_log = RunLog(str(tmp_path), "val_adv_accuracy", 0.1)
    run_log.on_train_begin()
    for epoch, value in enumerate((0.4, 0.6)):
        run_log.set_model(models[epoch])
        _epoch(run_log, epoch, value)
    # Epoch 3 improves; the process dies before BackupAndRestore saves it.
    run_log.set_model(models[2])
    _epoch(run_log, 2, 0.7)
    assert sorted(os.listdir(folder.checkpoints)) == [
        "best.keras", "best.pending-epoch3.keras", "last.keras"]
    for a, b in zip(_weights_of(folder.best_checkpoint), models[1].classifier.get_weights()):
        np.testing.assert_array_equal(a, b)   # epoch 2's, the last backed-up best

    # The resumed run restarts at epoch 3 (the backup holds 2) and does worse.
    resumed = RunLog(str(tmp_path), "val_adv_accuracy", 0.1)
    resumed.set_model(models[3])
    resumed.on_train_begin()
    _epoch(resumed, 2, 0.5)
    resumed.on_train_end()
    assert [r["epoch"] for r in resumed.rows] == [1, 2, 3]
    assert sorted(os.listdir(folder.checkpoints)) == ["best.keras", "last.keras"]
    for a, b in zip(_weights_of(folder.best_checkpoint), models[1].classifier.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_an_improving_epoch_becomes_best_keras_once_backed_up(tmp_path):
    from atalp_keras.training.callbacks import RunLog

    folder = artifacts.RunFolder(str(tmp_path))
    first, second = _model(1), _model(2)
    run_log = RunLog(str(tmp_path), "val_adv_accuracy", 0.1)
    run_log.set_model(first)
    run_log.on_train_begin()
    _epoch(run_log, 0, 0.4)
    assert not os.path.exists(folder.best_checkpoint)
    run_log.set_model(second)
    _epoch(run_log, 1, 0.6)   # epoch 1 is backed up when epoch 2 begins
    for a, b in zip(_weights_of(folder.best_checkpoint), first.classifier.get_weights()):
        np.testing.assert_array_equal(a, b)
    run_log.on_train_end()            # and epoch 2 when training ends
    assert sorted(os.listdir(folder.checkpoints)) == ["best.keras", "last.keras"]
    for a, b in zip(_weights_of(folder.best_checkpoint), second.classifier.get_weights()):
        np.testing.assert_array_equal(a, b)

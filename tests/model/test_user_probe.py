"""What a new user tries with ATALPModel beyond the README (issue 24, item 4).

Keras callbacks watching the adversarial logs during `fit` (EarlyStopping,
ReduceLROnPlateau, ModelCheckpoint, BackupAndRestore after a crash), and a
`.keras` file saved here and loaded in a fresh process, through
`atalp_keras.load_model` and through plain `keras.models.load_model`.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import atalp_keras as ak

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _model(seed=0, method="pat", **compile_kwargs):
    """A tiny ResNet under `method`, PGD-1 for training and validation."""
    keras.utils.set_random_seed(seed)
    model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4)))
    model.compile(keras.optimizers.Adam(1e-2), method=method,
                  attack=ak.PGDAttack(0.2, 0.1, 1, seed=0),
                  eval_attack=ak.PGDAttack(0.2, 0.1, 1, seed=0), **compile_kwargs)
    return model


@pytest.fixture(scope="module")
def split(digits):
    x, y = digits[0], digits[1]
    return (x[:128], y[:128]), (x[-64:], y[-64:])


class _Record(keras.callbacks.Callback):
    """Epochs begun, and the weights and step count when `fit` starts."""

    def __init__(self):
        super().__init__()
        self.epochs, self.start_weights, self.start_iterations = [], None, None
        self.epoch_end_weights = []

    def on_train_begin(self, logs=None):
        self.start_weights = [v.numpy().copy() for v in self.model.classifier.weights]
        self.start_iterations = int(self.model.optimizer.iterations)

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_end_weights.append([v.numpy().copy() for v in self.model.classifier.weights])


class _Crash(keras.callbacks.Callback):
    """Raises at the end of one epoch, as a killed job would stop."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


# -------------------------------------------------------------- callbacks
@pytest.fixture(scope="module")
def alp_model():
    """One `alp` model (it logs every kind of term); fit again reuses its trace."""
    return _model(method="alp")


def test_auto_mode_knows_which_way_each_log_improves(alp_model, split, tmp_path):
    # As with a compiled Keras accuracy, mode="auto" must find that
    # val_adv_accuracy improves upwards and the loss terms downwards; it raised
    # "Keras isn't able to automatically determine whether that metric should
    # be maximized or minimized" for all but loss/val_loss.
    (x, y), validation = split
    up = [keras.callbacks.EarlyStopping(monitor="val_adv_accuracy", patience=5),
          keras.callbacks.ReduceLROnPlateau(monitor="val_adv_accuracy", patience=5),
          keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"),
                                          monitor="val_adv_accuracy", save_best_only=True),
          keras.callbacks.EarlyStopping(monitor="accuracy", patience=5)]
    down = [keras.callbacks.EarlyStopping(monitor=name, patience=5)
            for name in ("val_ce_adv", "val_loss", "alp", "ce_natural")]
    alp_model.fit(x[:32], y[:32], validation_data=validation, batch_size=32, epochs=1,
                  callbacks=up + down, verbose=0)
    assert [c.monitor_op for c in up] == [keras.ops.greater] * len(up)
    assert [c.monitor_op for c in down] == [keras.ops.less] * len(down)
    assert os.path.isfile(tmp_path / "best.keras")


def test_an_unknown_monitor_still_fails_as_in_keras(alp_model, split):
    (x, y), validation = split
    callback = keras.callbacks.EarlyStopping(monitor="val_robustness", patience=5)
    with pytest.raises(ValueError, match="val_robustness"):
        alp_model.fit(x[:32], y[:32], validation_data=validation, batch_size=32, epochs=1,
                      callbacks=[callback], verbose=0)


def test_early_stopping_reduce_lr_and_best_checkpoint_follow_val_adv_accuracy(split, tmp_path):
    (x, y), validation = split
    best_path = str(tmp_path / "best.keras")
    record = _Record()
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_adv_accuracy", mode="max", patience=1,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_adv_accuracy", mode="max", patience=1,
                                          factor=0.5, min_lr=1e-5),
        keras.callbacks.ModelCheckpoint(best_path, monitor="val_adv_accuracy", mode="max",
                                        save_best_only=True),
        record,
    ]
    model = _model()
    # A learning rate this large makes validation PGD accuracy stall within a few epochs.
    history = model.fit(x, y, validation_data=validation, batch_size=32, epochs=8,
                        callbacks=callbacks, verbose=0).history
    scores = history["val_adv_accuracy"]
    best = int(np.argmax(scores))  # The first of equal maxima, as Keras keeps it.
    # EarlyStopping: one epoch without improvement (patience=1) ends the run.
    assert len(scores) == min(8, best + 2), scores
    # ReduceLROnPlateau halved the rate after each epoch that did not improve.
    stalls = sum(1 for i in range(1, len(scores)) if scores[i] <= max(scores[:i]))
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-2 * 0.5 ** stalls)
    # restore_best_weights and the best checkpoint both hold the best epoch's weights.
    for now, kept in zip(model.classifier.weights, record.epoch_end_weights[best]):
        np.testing.assert_array_equal(now.numpy(), kept)
    reloaded = ak.load_model(best_path)
    for a, b in zip(reloaded.classifier.weights, record.epoch_end_weights[best]):
        np.testing.assert_array_equal(a.numpy(), b)


def test_backup_and_restore_resumes_a_crashed_fit(split, tmp_path):
    (x, y), validation = split
    backup = str(tmp_path / "backup")
    crashed = _model(method="pat")
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(x, y, validation_data=validation, batch_size=32, epochs=3, shuffle=False,
                    callbacks=[keras.callbacks.BackupAndRestore(backup), _Crash(epoch=1)],
                    verbose=0)
    assert os.path.isdir(backup)

    resumed, record = _model(method="pat"), _Record()
    history = resumed.fit(x, y, validation_data=validation, batch_size=32, epochs=3,
                          shuffle=False, callbacks=[keras.callbacks.BackupAndRestore(backup),
                                                    record], verbose=0).history
    # Only the missing epoch runs, from the weights and optimizer step at the crash.
    assert record.epochs == [2]
    assert len(history["val_adv_accuracy"]) == 1
    assert record.start_iterations == int(crashed.optimizer.iterations) == 2 * (128 // 32)
    for a, b in zip(record.start_weights, crashed.classifier.weights):
        np.testing.assert_array_equal(a, b.numpy())
    assert int(resumed.optimizer.iterations) == 3 * (128 // 32)
    assert not os.path.exists(backup)  # Removed once the run finished.


# ------------------------------------------------- save, load in a new process
_LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    request = json.loads(sys.argv[1])
    import keras
    if request["how"] == "ak.load_model":
        import atalp_keras as ak
        model = ak.load_model(request["path"])
    else:
        import atalp_keras.model  # noqa: F401  (registers ATALPModel with Keras)
        model = keras.models.load_model(request["path"])
    x, y = np.load(request["x"]), np.load(request["y"])
    predictions = model.predict(x, verbose=0)
    start = int(model.optimizer.iterations)
    before = [v.numpy().copy() for v in model.classifier.trainable_variables]
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    moved = any(not np.array_equal(a, v.numpy())
                for a, v in zip(before, model.classifier.trainable_variables))
    np.save(request["out"], predictions)
    print(json.dumps({
        "type": type(model).__name__, "method": model.method,
        "awp_gamma": model.awp_gamma, "weights": model.loss_weights_,
        "attack": model.train_attack.get_config(),
        "iterations": [start, int(model.optimizer.iterations)],
        "loss": history["loss"][-1], "moved": moved,
    }))
""")


@pytest.fixture(scope="module")
def saved(digits, tmp_path_factory):
    """A MART model with AWP, trained one epoch and saved as .keras."""
    tmp = tmp_path_factory.mktemp("saved")
    x, y = digits[0][:32], digits[1][:32]
    model = _model(method="mart", awp_gamma=0.01, mart_beta=4.0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(str(tmp / "m.keras"))
    np.save(tmp / "x.npy", x)
    np.save(tmp / "y.npy", y)
    return tmp, model, model.predict(x, verbose=0)


@pytest.mark.parametrize("how", ["ak.load_model", "keras.models.load_model"])
def test_saved_model_loads_in_a_fresh_process_predicts_the_same_and_trains_on(how, saved):
    tmp, model, predictions = saved
    out = str(tmp / f"{how}.npy")
    request = {"how": how, "path": str(tmp / "m.keras"), "x": str(tmp / "x.npy"),
               "y": str(tmp / "y.npy"), "out": out}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", _LOADER, json.dumps(request)],
                            capture_output=True, text=True, env=env, cwd=str(tmp), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(np.load(out), predictions)
    assert report["type"] == "ATALPModel" and report["method"] == "mart"
    assert report["awp_gamma"] == 0.01 and report["weights"]["mart_beta"] == 4.0
    assert report["attack"] == model.train_attack.get_config()
    # The optimizer state came along: training continues at step 2 (32 images, batch 16).
    assert report["iterations"] == [2, 4]
    assert np.isfinite(report["loss"]) and report["moved"]

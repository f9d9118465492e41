"""The early stop against catastrophic overfitting (`OverfitGuard`,
``--overfit_guard_drop``): it watches PGD accuracy on fixed training images,
and when that collapses it restores the best epoch's weights, stops, and the
run's record says so."""

import keras
import numpy as np
import pytest

from atalp_keras.attacks import PGDAttack
from atalp_keras.errors import UsageError
from atalp_keras.training import TrainConfig, train
from atalp_keras.training.callbacks import OverfitGuard


@pytest.fixture
def trained_copy(undefended_model):
    model = keras.models.clone_model(undefended_model)
    model.set_weights(undefended_model.get_weights())
    return model


def test_a_collapse_restores_the_best_epoch_and_stops(digits, trained_copy):
    x, y = digits[0][:128], digits[1][:128]
    guard = OverfitGuard(trained_copy, x, y, PGDAttack(0.01, 0.0025, 3, seed=0), max_drop=0.2)
    guard.set_model(trained_copy)
    guard.on_train_begin()
    good = [w.copy() for w in trained_copy.get_weights()]
    logs = {}
    guard.on_epoch_end(0, logs)
    assert logs["guard_pgd_accuracy"] > 0.8  # a tiny eps leaves a trained model accurate
    # The same weights again (the attack's random start differs): no stop.
    guard.on_epoch_end(1, logs)
    assert not trained_copy.stop_training and guard.best_epoch in (1, 2)
    best_epoch = guard.best_epoch
    # Zeroed weights predict one class (about 10% of digits): the fall exceeds 0.2.
    trained_copy.set_weights([np.zeros_like(w) for w in good])
    guard.on_epoch_end(2, logs)
    assert logs["guard_pgd_accuracy"] < 0.3
    assert trained_copy.stop_training
    assert all(np.array_equal(a, b) for a, b in zip(trained_copy.get_weights(), good))
    summary = guard.summary()
    assert (summary["stopped_at_epoch"], summary["weights_of_epoch"]) == (3, best_epoch)
    assert summary["examples"] == 128 and summary["attack"]["num_steps"] == 3


def test_train_records_the_guard_and_its_accuracy_per_epoch(tmp_path):
    result = train(TrainConfig(
        dataset="digits", method="fast", max_train_examples=64, max_test_examples=32,
        epochs=2, batch_size=32, eval_pgd_steps=1, eps=0.1, tiny_widths=(4, 4, 4, 4),
        verbose=0, export=False, overfit_guard_drop=1.0, model_dir=str(tmp_path / "run")))
    assert all(0.0 <= row["guard_pgd_accuracy"] <= 1.0 for row in result["history"])
    guard = result["training"]["overfit_guard"]
    # A drop of 1.0 can never be exceeded: the run goes its full length.
    assert guard["stopped_at_epoch"] is None and guard["max_drop"] == 1.0
    # It watches the held-out split (a tenth of the 64 training digits), not
    # the images the model trains on.
    assert guard["examples"] == 6 and guard["attack"]["num_steps"] == 10
    assert result["training"]["epochs_completed"] == 2


def test_off_by_default_and_refused_across_workers():
    assert TrainConfig().validate().overfit_guard_drop == 0.0
    with pytest.raises(UsageError, match="overfit_guard_drop=0.2, distribution='multi_worker'"):
        TrainConfig(overfit_guard_drop=0.2, distribution="multi_worker").validate()
    with pytest.raises(UsageError, match="overfit_guard_drop"):
        TrainConfig(overfit_guard_drop=1.5).validate()

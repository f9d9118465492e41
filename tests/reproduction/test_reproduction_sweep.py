"""The sweep's choice and its validation split (held out of the training set)."""

import numpy as np
import pytest

from atalp_keras.reproduction import sweep


def test_select_best_picks_highest_validation_robust_accuracy():
    grid = [
        {"at_weight": 0.1, "val_robust": 0.50, "val_clean": 0.95},
        {"at_weight": 0.3, "val_robust": 0.62, "val_clean": 0.90},
        {"at_weight": 1.0, "val_robust": 0.61, "val_clean": 0.99},
        {"at_weight": 3.0, "val_robust": 0.40, "val_clean": 0.97},
    ]
    assert sweep.select_best(grid)["at_weight"] == 0.3


def test_select_best_breaks_ties_by_clean_accuracy_then_order():
    grid = [
        {"alp_weight": 0.1, "val_robust": 0.6, "val_clean": 0.90},
        {"alp_weight": 0.5, "val_robust": 0.6, "val_clean": 0.93},
        {"alp_weight": 1.0, "val_robust": 0.6, "val_clean": 0.93},
    ]
    assert sweep.select_best(grid)["alp_weight"] == 0.5


def test_select_best_refuses_empty_or_incomplete_grids():
    with pytest.raises(ValueError, match="empty"):
        sweep.select_best([])
    with pytest.raises(ValueError, match="val_clean"):
        sweep.select_best([{"val_robust": 0.5}])


def test_validation_split_never_meets_the_training_subset(tmp_path, monkeypatch):
    """What train() trains on with max_train_examples and the sweep's
    validation split are disjoint and together the whole training set."""
    from atalp_keras import data, training

    info = data.load_dataset("digits", seed=0)
    limit, val_idx = sweep.validation_split(info, 0.2, seed=3, data_seed=0)
    x_all, _ = data.to_numpy(info.train)
    seen = []
    original = training.data.make_pipeline

    def spy(dataset, *args, **kwargs):
        if kwargs.get("shuffle"):
            seen.append(data.to_numpy(dataset)[0])
        return original(dataset, *args, **kwargs)

    monkeypatch.setattr(training.data, "make_pipeline", spy)
    training.train(training.TrainConfig(
        dataset="digits", method="standard", epochs=1, tiny_widths=(4, 4, 4, 4),
        max_train_examples=limit, eval_pgd_steps=0, export=False, verbose=0, seed=3,
        # As the sweep's models.train_config: its validation is val_idx.
        validation_split=0.0, keep="last", model_dir=str(tmp_path / "run")))
    trained = seen[-1]
    assert len(trained) == limit and len(val_idx) == info.num_train - limit
    x_val, _ = sweep.validation_arrays(info, val_idx, 0)
    np.testing.assert_array_equal(x_val, x_all[val_idx])
    train_rows = {row.tobytes() for row in trained}
    all_rows = {row.tobytes() for row in x_all}
    # Digits holds no duplicate images, so rows identify examples.
    assert len(all_rows) == len(x_all)
    assert not train_rows & {row.tobytes() for row in x_val}
    assert train_rows | {row.tobytes() for row in x_val} == all_rows
